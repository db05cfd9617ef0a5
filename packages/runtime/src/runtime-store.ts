import type { Meta, Result, RuntimeModule } from './types.ts';

// The seam between the process manager and where it keeps its registry (issue 21): exactly what
// manager.ts and managed-process.ts use. Redis is the real store (redis-store.ts); memory-store.ts
// keeps the same in maps for unit tests. test/runtime-store.contract.ts is what both must do.

/** A process as the registry keeps it: enough to rebuild it on any node with the same images. */
export interface ProcessRecord {
  id: string;
  moduleId: string;
  owner: string;
  /** Spawn data (process code for the JS runtime). */
  data: string;
  tags: Array<{ name: string; value: string }>;
  createdAt: string;
  /** The checkpoint a restart resumes from, and the last message sequence it includes. */
  checkpoint: { sha256: string; sequence: number };
}

/** One logged message. */
export interface LogEntry {
  from: string;
  meta: Meta;
  /** Set when applying the message crashed its container twice: it had no effect and replay skips it. */
  failed?: string;
}

/**
 * The runtime's registry: modules, processes, and each process's write-ahead message log (numbered
 * 1, 2, 3, … without gaps) with the result of every message. Every write replaces what was stored
 * under the same key (module id, process id, sequence), so repeating a write does no harm. What is
 * read back is a copy: changing it, or what was passed to a put, never changes what is stored.
 * Listings come in no particular order.
 *
 * @example
 * await store.putProcess(rec);
 * await store.putMessage(rec.id, { from, meta }); // meta.sequence = (await store.lastSequence(rec.id)) + 1
 * await store.putResult(rec.id, meta.sequence, result);
 * const [entry] = await store.entries(rec.id, meta.sequence, meta.sequence);
 */
export interface RuntimeStore {
  /** Add or replace a module (by id). */
  putModule(mod: RuntimeModule): Promise<void>;
  listModules(): Promise<RuntimeModule[]>;
  /** Add or replace a process record (by id); its log and results are untouched. */
  putProcess(rec: ProcessRecord): Promise<void>;
  /** Remove a process with its log, item ids and results; nothing happens for an unknown id. */
  deleteProcess(id: string): Promise<void>;
  listProcesses(): Promise<ProcessRecord[]>;
  /**
   * Log a message at `entry.meta.sequence` (write-ahead: before it is applied) and index its item id.
   * Writing the same sequence again replaces the entry (a message marked `failed` after the fact).
   */
  putMessage(pid: string, entry: LogEntry): Promise<void>;
  /** Store (or replace) the result of the message at `sequence`. */
  putResult(pid: string, sequence: number, result: Result): Promise<void>;
  /** Highest logged sequence (the log has no gaps, so also its length); 0 with no log or an unknown id. */
  lastSequence(pid: string): Promise<number>;
  /** The sequence a message was logged at, by its item id; undefined when it was never logged. */
  sequenceOf(pid: string, itemId: string): Promise<number | undefined>;
  /** Logged entries with sequences from..to (inclusive), in sequence order; sequences not logged are left out. */
  entries(pid: string, fromSeq: number, toSeq: number): Promise<LogEntry[]>;
  /**
   * Results for sequences from..to (inclusive): one slot per sequence, undefined where none is stored;
   * [] when `toSeq < fromSeq`.
   */
  results(pid: string, fromSeq: number, toSeq: number): Promise<Array<Result | undefined>>;
}
