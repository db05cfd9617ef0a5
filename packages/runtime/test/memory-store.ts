import type { ImageStore, StoredImage } from '../src/image-store.ts';
import type { LogEntry, ProcessRecord, RuntimeStore } from '../src/store.ts';
import type { Result, RuntimeModule } from '../src/types.ts';

// Test doubles for the manager's other two dependencies, so it runs on the FakeBackend without Redis
// or an imported image. Values are stored as JSON text, as RuntimeStore keeps them in Redis, so a
// caller that mutates what it passed in cannot change what is stored.

/** The RuntimeStore methods the process manager calls, kept in maps. */
export class MemoryStore {
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

  /** As the manager's options want it (RuntimeStore is a class over Redis, not an interface yet). */
  asRuntimeStore(): RuntimeStore {
    return this as unknown as RuntimeStore;
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

/** An image store that knows one image by id (rootfs unused by the fake backend). */
export function oneImageStore(dir: string, image: { id: string; name: string }): ImageStore {
  const stored: StoredImage = {
    id: image.id,
    repoTags: [image.name],
    config: { Entrypoint: ['node', '/srv/server.mjs'] },
    rootfs: `${dir}/rootfs`,
    importedAt: new Date(0).toISOString(),
  };
  return {
    dir,
    async verified(id: string): Promise<StoredImage> {
      if (id !== image.id) throw Object.assign(new Error(`no image ${id}`), { code: 'RUNTIME_IMAGE_NOT_FOUND' });
      return stored;
    },
  } as unknown as ImageStore;
}
