import { isFormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { type ChainBudget, MAX_HOPS, planOutbox, spawnedNotice } from './outbox.ts';
import type { SendInput, SendOutput } from './process-types.ts';

/** What outbox delivery uses of the process manager. */
export interface DeliveryHost {
  readonly log: Logger;
  /** True once the manager shuts down: nothing more is delivered. */
  isClosed(): boolean;
  hasModule(id: string): boolean;
  hasProcess(id: string): boolean;
  spawn(input: {
    id: string;
    module: string;
    owner: string;
    data: string;
    tags: Array<{ name: string; value: string }>;
  }): Promise<unknown>;
  send(pid: string, input: SendInput): Promise<SendOutput>;
}

/**
 * Deliver a result's outbox on this node: messages to processes here (chained: their own outboxes
 * go out in turn, up to MAX_HOPS), spawns as new processes owned by the sender, each followed by a
 * `Spawned` notice to it. Targets on other nodes are logged and dropped (no cross-node MU yet).
 */
export async function deliverOutbox(
  host: DeliveryHost,
  source: string,
  out: SendOutput,
  hops: number,
  chain: ChainBudget,
): Promise<void> {
  if (host.isClosed()) return;
  if (hops >= MAX_HOPS) {
    host.log.warn({ processId: source, itemId: out.itemId, hops }, 'message chain too long; outbox dropped');
    return;
  }
  const plan = planOutbox(source, out.itemId, out.result);
  for (const child of plan.spawns) {
    if (chain.spawns <= 0 || chain.deliveries <= 0) {
      host.log.warn({ processId: source, itemId: out.itemId }, 'chain spawn budget used up; spawn dropped');
      continue;
    }
    chain.spawns--;
    chain.deliveries--;
    if (!host.hasModule(child.module)) {
      host.log.warn({ processId: source, module: child.module }, 'Spawn names a module this node does not have');
      continue;
    }
    if (!host.hasProcess(child.id))
      await host.spawn({ id: child.id, module: child.module, owner: source, data: child.data, tags: child.tags });
    plan.messages.push(spawnedNotice(source, child));
  }
  for (const m of plan.messages) {
    if (chain.deliveries <= 0) {
      host.log.warn({ processId: source, itemId: out.itemId }, 'chain delivery budget used up; message dropped');
      return;
    }
    chain.deliveries--;
    if (!host.hasProcess(m.target)) {
      host.log.warn({ processId: source, target: m.target }, 'message target is not on this node; not delivered');
      continue;
    }
    const from = m.action === 'Spawned' ? (m.params.Process ?? source) : source;
    await host
      .send(m.target, {
        from,
        action: m.action,
        data: m.data,
        params: m.params,
        itemId: m.id,
        hops: hops + 1,
        chain,
      })
      .catch((err) => {
        if (isFormError(err) && err.code === 'CONFLICT') return; // delivered before
        throw err;
      });
  }
}
