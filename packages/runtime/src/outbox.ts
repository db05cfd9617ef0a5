import { createHash } from 'node:crypto';
import type { Result } from './types.ts';

/** A message a process sent, as the node delivers it to another process here. */
export interface Delivery {
  /** Deterministic id (source, message, position): a redelivery is refused as a duplicate. */
  id: string;
  target: string;
  action: string;
  data: string;
  params: Record<string, string>;
}

/** A process a process asked to spawn, with the id it gets. */
export interface ChildSpawn {
  id: string;
  module: string;
  data: string;
  tags: Array<{ name: string; value: string }>;
  /** The spawn's Reference (the parent's `Spawned` notice carries it as X-Reference). */
  reference?: string;
}

/** Most hops a chain of process-to-process messages may take (a ping-pong loop stops here). */
export const MAX_HOPS = 32;
/**
 * Most deliveries (messages + spawns) one message from outside may cause in all, down its whole chain:
 * a process that sends itself two messages per message would otherwise double them at every hop.
 */
export const MAX_CHAIN_DELIVERIES = 256;
/** Most spawns one chain may cause (each is a container). */
export const MAX_CHAIN_SPAWNS = 8;

/** What is left of a chain's delivery budget (shared by every delivery the chain causes). */
export interface ChainBudget {
  deliveries: number;
  spawns: number;
}

export function newChainBudget(): ChainBudget {
  return { deliveries: MAX_CHAIN_DELIVERIES, spawns: MAX_CHAIN_SPAWNS };
}

const derivedId = (...parts: string[]) => createHash('sha256').update(parts.join('\n')).digest('base64url');

/**
 * What to do with a result's outbox (pure): the messages to deliver, each tagged as AO tags pushed
 * messages (`From-Process`, `Pushed-For`), and the processes to spawn. Ids derive from the source
 * process, the message that produced them and their position, so delivering twice is a no-op.
 *
 * @example
 * const { messages, spawns } = planOutbox('pidA', 'msg1', result);
 */
export function planOutbox(
  source: string,
  itemId: string,
  result: Result,
): { messages: Delivery[]; spawns: ChildSpawn[] } {
  if (result.error) return { messages: [], spawns: [] };
  const messages = result.messages.map((m, i) => {
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(m.tags)) if (k !== 'Action') params[k] = v;
    params['From-Process'] = source;
    params['Pushed-For'] = itemId;
    return {
      id: derivedId(source, itemId, 'message', String(i)),
      target: m.target,
      action: m.action ?? m.tags.Action ?? '',
      data: m.data,
      params,
    };
  });
  const spawns = result.spawns.map((s, i) => {
    const tags = Object.entries(s.tags)
      .filter(([k]) => k !== 'Module')
      .map(([name, value]) => ({ name, value }));
    tags.push({ name: 'From-Process', value: source });
    return {
      id: derivedId(source, itemId, 'spawn', String(i)),
      module: s.module,
      data: s.data,
      tags,
      ...(s.tags.Reference ? { reference: s.tags.Reference } : {}),
    };
  });
  return { messages, spawns };
}

/** The notice a parent gets when its child process exists (AO: Action `Spawned`, tag `Process`). */
export function spawnedNotice(parent: string, child: ChildSpawn): Delivery {
  const params: Record<string, string> = { Process: child.id, 'From-Process': child.id };
  if (child.reference) params['X-Reference'] = child.reference;
  return { id: derivedId(parent, child.id, 'spawned'), target: parent, action: 'Spawned', data: '', params };
}
