import type { LogEntry, ProcessRecord, RuntimeStore } from './runtime-store.ts';
import type { Result, RuntimeModule } from './types.ts';

// A RuntimeStore in maps for unit tests (no Redis): the manager's logic runs on it with the
// FakeBackend. Values are kept as JSON text, as Redis keeps them, so a caller that changes what it
// passed in or read back cannot change what is stored. It passes the same contract as the Redis
// store (test/runtime-store.contract.ts).

/**
 * The runtime's registry in memory; gone with the process.
 *
 * @example
 * const store = new MemoryRuntimeStore();
 * const pm = new ProcessManager({ store, backend: new FakeBackend(), ... });
 */
export class MemoryRuntimeStore implements RuntimeStore {
  private readonly modules = new Map<string, string>();
  private readonly processes = new Map<string, string>();
  private readonly logs = new Map<string, Map<number, string>>();
  private readonly ids = new Map<string, Map<string, number>>();
  private readonly resultsOf = new Map<string, Map<number, string>>();

  async putModule(mod: RuntimeModule): Promise<void> {
    this.modules.set(mod.id, JSON.stringify(mod));
  }

  async listModules(): Promise<RuntimeModule[]> {
    return [...this.modules.values()].map((v) => JSON.parse(v) as RuntimeModule);
  }

  async putProcess(rec: ProcessRecord): Promise<void> {
    this.processes.set(rec.id, JSON.stringify(rec));
  }

  async deleteProcess(id: string): Promise<void> {
    this.processes.delete(id);
    this.logs.delete(id);
    this.ids.delete(id);
    this.resultsOf.delete(id);
  }

  async listProcesses(): Promise<ProcessRecord[]> {
    return [...this.processes.values()].map((v) => JSON.parse(v) as ProcessRecord);
  }

  async putMessage(pid: string, entry: LogEntry): Promise<void> {
    at(this.logs, pid).set(entry.meta.sequence, JSON.stringify(entry));
    at(this.ids, pid).set(entry.meta.itemId, entry.meta.sequence);
  }

  async putResult(pid: string, sequence: number, result: Result): Promise<void> {
    at(this.resultsOf, pid).set(sequence, JSON.stringify(result));
  }

  async lastSequence(pid: string): Promise<number> {
    // the number of entries, as the Redis store's HLEN: the same as the highest sequence for a log without gaps
    return this.logs.get(pid)?.size ?? 0;
  }

  async sequenceOf(pid: string, itemId: string): Promise<number | undefined> {
    return this.ids.get(pid)?.get(itemId);
  }

  async entries(pid: string, fromSeq: number, toSeq: number): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    for (let s = fromSeq; s <= toSeq; s++) {
      const v = this.logs.get(pid)?.get(s);
      if (v !== undefined) out.push(JSON.parse(v) as LogEntry);
    }
    return out;
  }

  async results(pid: string, fromSeq: number, toSeq: number): Promise<Array<Result | undefined>> {
    const out: Array<Result | undefined> = [];
    for (let s = fromSeq; s <= toSeq; s++) {
      const v = this.resultsOf.get(pid)?.get(s);
      out.push(v === undefined ? undefined : (JSON.parse(v) as Result));
    }
    return out;
  }
}

function at<K, V>(m: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let inner = m.get(key);
  if (!inner) {
    inner = new Map();
    m.set(key, inner);
  }
  return inner;
}
