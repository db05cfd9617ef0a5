/**
 * The HyMatrix `Vm` interface (seed 004) in TypeScript, and the message and result shapes it uses.
 *
 * @example
 * const res = await vm.apply(sender, { itemId, processId, action: 'Inc', sequence: 1, mode: 'apply', ... });
 * if (res.error) console.log('message failed, process still alive:', res.error);
 */

/** How a message is applied: `replay` re-applies a logged message, `dry-run` computes a result and keeps no state. */
export type ApplyMode = 'apply' | 'replay' | 'dry-run';

export const APPLY_MODES: readonly ApplyMode[] = ['apply', 'replay', 'dry-run'];

/** One message for a process, as the node's scheduler hands it over. */
export interface Meta {
  /** Message (data item) id. */
  itemId: string;
  processId: string;
  action: string;
  /** Address of the message's signer (who sent it). */
  sender: string;
  /** Position in the process's message log, starting at 1. */
  sequence: number;
  nonce: number;
  /** Milliseconds since the epoch, fixed by the scheduler (handlers see this as `Date.now()`). */
  timestamp: number;
  /** Tags other than Action, as name -> value. */
  params: Record<string, string>;
  data: string;
  mode: ApplyMode;
}

/** A message a process sends to another process. */
export interface OutMessage {
  target: string;
  action?: string;
  data: string;
  tags: Record<string, string>;
}

/** A process a process asks to spawn. */
export interface SpawnRequest {
  module: string;
  data: string;
  tags: Record<string, string>;
}

/** What applying one message produced. A failing handler yields `error`, never a crash of the process. */
export interface Result {
  messages: OutMessage[];
  spawns: SpawnRequest[];
  /** Everything the handlers printed. */
  output: string;
  /** The handler's return value, as text. */
  data: string;
  /** Set when the message failed (handler threw, time limit); the process state is as before the message. */
  error?: string;
}

/** A running process, whatever executes it (seed 004: hymx/vmm/schema.Vm). */
export interface Vm {
  apply(from: string, meta: Meta): Promise<Result>;
  /** Serialize the process (state + workspace) into a self-verifying string. */
  checkpoint(): Promise<string>;
  /** Replace the process's state with a checkpoint; a bad checkpoint is refused and the old state kept. */
  restore(data: string): Promise<void>;
  close(): Promise<void>;
}

/** A module: which container image runs processes of this kind (seed 004 module format). */
export interface ModuleTag {
  name: string;
  value: string;
}

export interface RuntimeModule {
  /** Content id: sha256 of the canonical module JSON (or the id given in its mod-<id>.json file). */
  id: string;
  moduleFormat: string;
  tags: ModuleTag[];
}

export function emptyResult(): Result {
  return { messages: [], spawns: [], output: '', data: '' };
}
