import type { KeyPair } from '@formation/identity';
import { FormError, formErrorFromBody } from '@formation/interface';
import { ApiClient } from '@formation/service';
import { createDataItem } from './ans104.ts';
import type { AoDataItem, AoResult } from './ao.ts';
import type { ProcessInfo, SendOutput } from './manager.ts';
import type { ApplyMode, Result } from './types.ts';

/**
 * Client of the runtime management API (signs with the given key).
 *
 * @example
 * const rt = new RuntimeClient('http://127.0.0.1:8080', key);
 * const p = await rt.spawn(moduleId, 'Handlers.add("ping","Ping",()=> "pong")');
 * const { result } = await rt.send(p.id, { action: 'Ping' });
 */
export class RuntimeClient {
  readonly api: ApiClient;

  constructor(baseUrl: string, key?: KeyPair, timeoutMs = 60_000) {
    this.api = new ApiClient(baseUrl, key, timeoutMs);
  }

  health(): Promise<{ ok: boolean; nodeId: string; nodeName: string }> {
    return this.api.get('/health');
  }
  addModule(mod: unknown): Promise<{ id: string; ModuleFormat: string; Tags: Array<{ name: string; value: string }> }> {
    return this.api.post('/modules', mod);
  }
  modules(): Promise<{
    modules: Array<{ id: string; ModuleFormat: string; Tags: Array<{ name: string; value: string }> }>;
  }> {
    return this.api.get('/modules');
  }
  importImage(path: string, expectId?: string): Promise<{ id: string; repoTags: string[] }> {
    return this.api.post('/images/import', expectId ? { path, expectId } : { path });
  }
  buildJsImage(): Promise<{ id: string; repoTags: string[]; archive: string }> {
    return this.api.request('POST', '/images/build-js', {}, { timeoutMs: 300_000 });
  }

  /** Build the Lua (AO) process runtime image on the node and import it (admins only). */
  buildLuaImage(): Promise<{ id: string; repoTags: string[]; archive: string }> {
    return this.api.request('POST', '/images/build-lua', {}, { timeoutMs: 300_000 });
  }
  spawn(module: string, data = '', tags?: Array<{ name: string; value: string }>): Promise<ProcessInfo> {
    return this.api.post('/processes', { module, data, ...(tags ? { tags } : {}) });
  }
  processes(): Promise<{ processes: ProcessInfo[] }> {
    return this.api.get('/processes');
  }
  process(pid: string): Promise<ProcessInfo> {
    return this.api.get(`/processes/${encodeURIComponent(pid)}`);
  }
  send(
    pid: string,
    msg: { action: string; data?: string; params?: Record<string, string>; itemId?: string; mode?: ApplyMode },
  ): Promise<SendOutput> {
    return this.api.post(`/processes/${encodeURIComponent(pid)}/messages`, msg);
  }
  result(pid: string, ref: string | number): Promise<{ sequence: number; itemId: string; result: Result | null }> {
    return this.api.get(`/processes/${encodeURIComponent(pid)}/results/${encodeURIComponent(String(ref))}`);
  }
  checkpoint(pid: string): Promise<{ sha256: string; sequence: number; size: number }> {
    return this.api.post(`/processes/${encodeURIComponent(pid)}/checkpoint`, {});
  }
  /** A checkpoint's JSON (state and workspace): signed, for the process owner and admins only. */
  checkpointData(pid: string, sha256: string): Promise<Record<string, unknown>> {
    return this.api.request(
      'GET',
      `/processes/${encodeURIComponent(pid)}/checkpoints/${encodeURIComponent(sha256)}`,
      undefined,
      { sign: true },
    );
  }
  restore(pid: string, ref: { sha256?: string; data?: string }): Promise<ProcessInfo> {
    return this.api.post(`/processes/${encodeURIComponent(pid)}/restore`, ref);
  }
  terminate(pid: string): Promise<{ ok: boolean }> {
    return this.api.delete(`/processes/${encodeURIComponent(pid)}`);
  }
}

/**
 * A minimal AO client (what aos does against a MU/CU/SU): ANS-104 data items signed with an Ethereum
 * (secp256k1) key, pointed at one node: mu-url = cu-url =
 * the node URL, scheduler = the node id.
 *
 * @example
 * const ao = new AoClient('http://127.0.0.1:8080', key); // data items are signed with key
 * const pid = await ao.spawn({ module, scheduler: nodeId, data: src });
 * const mid = await ao.message({ process: pid, tags: [{ name: 'Action', value: 'Ping' }] });
 * const res = await ao.result({ process: pid, message: mid });
 */
export class AoClient {
  private readonly api: ApiClient;
  private readonly owner: string;
  private readonly key: KeyPair;

  constructor(nodeUrl: string, key: KeyPair) {
    this.api = new ApiClient(nodeUrl, key);
    this.key = key;
    this.owner = key.address;
  }

  /** Post a signed ANS-104 data item (as aoconnect does against a MU). */
  private async post(item: AoDataItem): Promise<string> {
    const body = createDataItem(this.key, {
      ...(item.Target ? { target: item.Target } : {}),
      tags: item.Tags,
      data: item.Data ?? '',
    });
    let res: Response;
    try {
      res = await fetch(`${this.api.baseUrl}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', accept: 'application/json' },
        body,
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      throw new FormError('UNAVAILABLE', `Cannot reach ${this.api.baseUrl}: ${(err as Error).message}`);
    }
    const parsed = (await res.json().catch(() => undefined)) as { id?: string } | undefined;
    if (!res.ok) throw formErrorFromBody(parsed, res.status);
    return String(parsed?.id);
  }

  scheduler(): Promise<{ Name: string; Address: string }> {
    return this.api.get('/');
  }
  spawn(o: {
    module: string;
    scheduler: string;
    data?: string;
    tags?: Array<{ name: string; value: string }>;
  }): Promise<string> {
    return this.post({
      Owner: this.owner,
      Tags: [
        { name: 'Data-Protocol', value: 'ao' },
        { name: 'Type', value: 'Process' },
        { name: 'Module', value: o.module },
        { name: 'Scheduler', value: o.scheduler },
        ...(o.tags ?? []),
      ],
      Data: o.data ?? '',
    });
  }
  message(o: { process: string; tags: Array<{ name: string; value: string }>; data?: string }): Promise<string> {
    return this.post({
      Owner: this.owner,
      Target: o.process,
      Tags: [{ name: 'Data-Protocol', value: 'ao' }, { name: 'Type', value: 'Message' }, ...o.tags],
      Data: o.data ?? '',
    });
  }
  result(o: { process: string; message: string }): Promise<AoResult> {
    return this.api.get(`/result/${encodeURIComponent(o.message)}?process-id=${encodeURIComponent(o.process)}`);
  }
  dryrun(o: { process: string; tags: Array<{ name: string; value: string }>; data?: string }): Promise<AoResult> {
    return this.api.request(
      'POST',
      `/dry-run?process-id=${encodeURIComponent(o.process)}`,
      { Owner: this.owner, Target: o.process, Tags: o.tags, Data: o.data ?? '' },
      { sign: false },
    );
  }
}
