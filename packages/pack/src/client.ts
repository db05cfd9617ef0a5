import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { type KeyPair, signRequest } from '@formation/identity';
import {
  type ErrorCode,
  FormError,
  type FormfileSpec,
  type FormpackManifest,
  formErrorFromBody,
} from '@formation/interface';
import { ApiClient } from '@formation/service';
import { create as tarCreate } from 'tar';
import type { BuildInfo, BuildLogLine } from './build-jobs.ts';
import type { BuildEvent } from './builder.ts';
import { formpackId, readBuildContext } from './context.ts';
import { formpackIdKey, normalizeSpec } from './normalize.ts';

const NO_NODE_HINT = 'Start a node with `form node up`, or build on this machine with `form pack build --local`.';

/** Pack the Formfile and the build context of `spec` into a gzip tar (what POST /contexts takes). */
export async function packContext(spec: FormfileSpec, dir: string, formfile = 'Formfile'): Promise<Buffer> {
  const ctx = await readBuildContext(spec, dir);
  const files = [formfile, ...ctx.entries.map((e) => e.rel)];
  const chunks: Buffer[] = [];
  const stream = tarCreate({ cwd: dir, gzip: true, portable: true, noDirRecurse: true, follow: false }, files);
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * Client of the pack API (port 3003): upload a context, build, follow the log, list, inspect, delete.
 *
 * @example
 * const c = new PackClient('http://127.0.0.1:3003', key);
 * const build = await c.build(spec, dir);
 * for await (const line of c.log(build.buildId)) console.log(line);
 */
export class PackClient {
  readonly api: ApiClient;
  private readonly baseUrl: string;
  private readonly key: KeyPair | undefined;

  /**
   * `nodeKey`: the node expected at an https:// base (else the key pinned for it, else the one its
   * certificate is bound to on first contact; see `@formation/service` nodeFetch).
   */
  constructor(baseUrl: string, key?: KeyPair, nodeKey?: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.key = key;
    this.api = new ApiClient(this.baseUrl, key, 60_000, nodeKey);
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    try {
      // Same transport as the JSON calls: over https only to the expected node.
      return await this.api.fetch(path, init);
    } catch (err) {
      if (err instanceof FormError) throw err;
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code === 'ECONNREFUSED') {
        throw new FormError('CLI_NO_NODE', `Cannot reach the pack service at ${this.baseUrl}: nothing is listening`, {
          hint: NO_NODE_HINT,
        });
      }
      throw new FormError('UNAVAILABLE', `Cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
  }

  /** Run an ApiClient call, turning "nothing listens" into the pack-specific hint. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FormError && err.code === 'CLI_NO_NODE') {
        throw new FormError('CLI_NO_NODE', `Cannot reach the pack service at ${this.baseUrl}: nothing is listening`, {
          hint: NO_NODE_HINT,
        });
      }
      throw err;
    }
  }

  /** Upload the build context (signed over its sha256); returns the context ID. */
  async uploadContext(spec: FormfileSpec, dir: string, formfile = 'Formfile'): Promise<string> {
    return this.uploadArchive(await packContext(spec, dir, formfile), 'application/gzip');
  }

  /** Upload a ready build-context archive (tar or tar.gz, e.g. from the dashboard); returns the context ID. */
  async uploadArchive(body: Uint8Array, contentType: 'application/gzip' | 'application/x-tar'): Promise<string> {
    if (!this.key)
      throw new FormError('KEY_NOT_FOUND', 'Cannot upload: no developer key', { hint: 'Run `form kit init`.' });
    const sha = createHash('sha256').update(body).digest('hex');
    const headers = {
      'content-type': contentType,
      'x-form-content-sha256': sha,
      ...signRequest(this.key, {
        method: 'POST',
        path: '/contexts',
        bodySha256: sha,
        audience: await this.api.audience(),
      }),
    };
    const res = await this.fetch('/contexts', { method: 'POST', headers, body: new Uint8Array(body) });
    const parsed = (await res.json().catch(() => undefined)) as { contextId?: string } | undefined;
    if (!res.ok) throw formErrorFromBody(parsed, res.status);
    return parsed!.contextId!;
  }

  /** The key of the password HMACs in this developer's Formpack IDs (see normalizeSpec), or undefined. */
  idKey(): string | undefined {
    return this.key ? formpackIdKey(this.key.privateKey) : undefined;
  }

  /** Start a build of an uploaded context; returns at once (follow it with `log`). */
  buildContext(contextId: string, formfile = 'Formfile'): Promise<BuildInfo> {
    const idKey = this.idKey();
    return this.call(() => this.api.post<BuildInfo>('/builds', { contextId, formfile, ...(idKey ? { idKey } : {}) }));
  }

  /** Upload and start a build; returns at once (follow it with `log`). */
  async build(spec: FormfileSpec, dir: string, formfile = 'Formfile'): Promise<BuildInfo> {
    return this.buildContext(await this.uploadContext(spec, dir, formfile), formfile);
  }

  /**
   * Build and wait: when the node already has this ID (computed here from the same inputs) nothing is
   * uploaded; otherwise upload, build, pass each log event to `onEvent`, and end with the manifest.
   * A failed build throws the builder's FormError (code, message, hint).
   */
  async buildAndWait(
    spec: FormfileSpec,
    dir: string,
    opts: { formfile?: string; onEvent?: (e: BuildEvent) => void } = {},
  ): Promise<{ id: string; manifest: FormpackManifest; cached: boolean }> {
    const t0 = Date.now();
    // Without a key a Formfile with passwords has a node-chosen ID: nothing to look up first.
    const idKey = this.idKey();
    const id =
      idKey || !spec.users.some((u) => u.passwd)
        ? formpackId(normalizeSpec(spec, idKey), (await readBuildContext(spec, dir)).digest)
        : null;
    const have = await (id ? this.get(id) : Promise.resolve(null)).catch((err: unknown) => {
      if (err instanceof FormError && (err.code === 'PACK_NOT_FOUND' || err.code === 'NOT_FOUND')) return null;
      throw err;
    });
    if (have && id) {
      opts.onEvent?.({ type: 'step', step: 'cached', detail: id, elapsedMs: Date.now() - t0 });
      return { id, manifest: have, cached: true };
    }
    const info = await this.build(spec, dir, opts.formfile ?? 'Formfile');
    let end: Extract<BuildLogLine, { type: 'end' }> | undefined;
    for await (const line of this.log(info.buildId)) {
      if (line.type === 'end') end = line;
      else opts.onEvent?.(line);
    }
    if (!end) throw new FormError('UNAVAILABLE', `Cannot follow build ${info.buildId}: the log ended early`);
    if (end.status === 'failed') {
      const e = end.error ?? { code: 'PACK_BUILD_FAILED', message: 'Cannot build: the build failed' };
      throw new FormError(e.code as ErrorCode, e.message, e.hint ? { hint: e.hint } : {});
    }
    return { id: info.id, manifest: await this.get(info.id), cached: info.cached };
  }

  status(buildId: string): Promise<BuildInfo> {
    return this.call(() => this.api.get<BuildInfo>(`/builds/${buildId}`));
  }

  /** The build log, line by line, until the build ends. */
  async *log(buildId: string): AsyncGenerator<BuildLogLine> {
    const res = await this.fetch(`/builds/${buildId}/log`, { method: 'GET' });
    if (!res.ok || !res.body) throw formErrorFromBody(await res.json().catch(() => undefined), res.status);
    let buf = '';
    const dec = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk, { stream: true });
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line.trim()) yield JSON.parse(line) as BuildLogLine;
      }
    }
  }

  /** All manifests on the node; signed when this client has a key (ENV values only in the signer's own). */
  async list(): Promise<FormpackManifest[]> {
    return (
      await this.call(() =>
        this.api.request<{ formpacks: FormpackManifest[] }>('GET', '/formpacks', undefined, {
          sign: this.key !== undefined,
        }),
      )
    ).formpacks;
  }

  /** A manifest; signed when this client has a key (only the owner sees ENV values). */
  get(id: string): Promise<FormpackManifest> {
    return this.call(() =>
      this.api.request<FormpackManifest>('GET', `/formpacks/${id}`, undefined, { sign: this.key !== undefined }),
    );
  }

  async remove(id: string): Promise<string> {
    return (await this.call(() => this.api.delete<{ deleted: string }>(`/formpacks/${id}`))).deleted;
  }

  /** URL of an artifact (for other nodes to download). */
  artifactUrl(id: string, name: 'disk' | 'kernel' | 'initramfs' | 'manifest'): string {
    return `${this.baseUrl}${join('/formpacks', id, 'artifacts', name)}`;
  }
}
