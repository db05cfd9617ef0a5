import { createHash } from 'node:crypto';
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type KeyPair, signRequest } from '@formation/identity';
import {
  DEFAULT_PORTS,
  FORMPACK_ARTIFACT_FILES,
  FORMPACK_ARTIFACTS,
  FORMPACK_LIMITS,
  FormError,
  isFormError,
} from '@formation/interface';
import { parseFormpackManifest } from '@formation/interface/formpack-schema';
import { ApiClient, type Logger, nodeFetch } from '@formation/service';
import type { NodeView } from '@formation/state';
import { checkImage } from '@formation/vmm';

/** A loopback host: nodes on one machine talk plain HTTP there; any other host is reached over TLS. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Where another node's API is: the host of its registered endpoint (or `peerApiHost` when all nodes
 * share one host's loopback, as in a devnet) and the service's port shifted by the node's port offset
 * (read from its registered p2p port). `https://` for any non-loopback host: a node with a public
 * address serves its APIs there over TLS bound to its node key (callers pin the peer's key from
 * state, see `PeerSource`); plain `http://` only on loopback, i.e. nodes on one machine.
 */
export function peerServiceUrl(
  node: Pick<NodeView, 'endpoint'>,
  service: 'pack' | 'formnet',
  peerApiHost?: string,
): string | null {
  const m = /^(.*):(\d+)$/.exec(node.endpoint ?? '');
  if (!m) return null;
  const offset = Number(m[2]) - DEFAULT_PORTS.p2p;
  if (offset < 0) return null;
  const host = peerApiHost ?? (m[1] as string);
  const scheme = isLoopbackHost(host) ? 'http' : 'https';
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${DEFAULT_PORTS[service] + offset}`;
}

/** A peer node's API: its URL and, for https, the node key its certificate must be bound to (from state). */
export interface PeerSource {
  url: string;
  nodeKey?: string | undefined;
}

function sourceOf(s: string | PeerSource): PeerSource {
  return typeof s === 'string' ? { url: s } : s;
}

/** The audience to sign for at a peer: its key from state when known, else what it says it is. */
async function audienceOf(src: PeerSource): Promise<string> {
  return src.nodeKey ?? (await new ApiClient(src.url, undefined, 10_000).audience());
}

/** Stream a URL to `dest` (via a temp file) hashing it; refused unless its sha256 is `sha256` (and, given `maxBytes`, cut off past it). */
async function download(
  url: string,
  dest: string,
  sha256: string,
  headers: Record<string, string> = {},
  maxBytes = Number.POSITIVE_INFINITY,
  nodeKey?: string,
): Promise<number> {
  const abort = new AbortController();
  const res = await nodeFetch(
    url,
    { headers, signal: AbortSignal.any([abort.signal, AbortSignal.timeout(600_000)]) },
    { nodeKey },
  );
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new FormError('UNAVAILABLE', `Cannot download ${url}: HTTP ${res.status}`);
  }
  const tmp = `${dest}.part`;
  rmSync(tmp, { force: true });
  const h = createHash('sha256');
  let bytes = 0;
  const src = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  const bounded = new Transform({
    transform(c: Buffer, _enc, done) {
      bytes += c.length;
      if (bytes > maxBytes) {
        abort.abort();
        done(new FormError('PACK_BAD_ARTIFACT', `Refused ${url}: it sends more than the ${maxBytes} bytes declared`));
        return;
      }
      h.update(c);
      done(null, c);
    },
  });
  try {
    await pipeline(src, bounded, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const got = h.digest('hex');
  if (got !== sha256 || (Number.isFinite(maxBytes) && bytes !== maxBytes)) {
    rmSync(tmp, { force: true });
    throw new FormError(
      'PACK_BAD_ARTIFACT',
      `Refused ${url}: sha256 ${got.slice(0, 12)}… (${bytes} bytes) is not the expected ${sha256.slice(0, 12)}…`,
    );
  }
  renameSync(tmp, dest);
  return bytes;
}

/** Read a response body as JSON, refused past `maxBytes` (a peer could stream forever). */
async function boundedJson(res: Response, maxBytes: number, what: string): Promise<unknown> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > maxBytes) {
      await reader.cancel();
      throw new FormError('PACK_BAD_MANIFEST', `Refused ${what}: larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new FormError('PACK_BAD_MANIFEST', `Refused ${what}: not JSON`);
  }
}

export interface FetchFormpackOptions {
  id: string;
  /** Pack APIs of nodes that may have it, best first (with their node keys: https is pinned to them). */
  sources: Array<string | PeerSource>;
  formpacksDir: string;
  /**
   * sha256 of each artifact as the owner published it (`formpack.publish` in state). Required: without
   * it nothing ties the bytes a peer serves to the owner, and the fetch is refused.
   */
  published?: Record<string, string> | undefined;
  /**
   * This node's key: manifests and artifacts are served only to the owner and to admitted nodes
   * placed for the instance, so every request is signed, for the serving node alone.
   */
  key?: KeyPair;
  logger: Logger;
}

/**
 * Copy a Formpack from another node's pack API into this node's formpacks dir. Nothing a peer sends is
 * trusted: the manifest must pass `parseFormpackManifest` (the schema local Formpacks use: fixed file
 * names, bounded sizes, integer ports, no extra fields), carry the requested ID, and list exactly the
 * artifacts the owner signed in `formpack.publish`; each artifact is cut off past its declared size and
 * must hash to the published sha256. Files are written only under fixed names in a fresh temp dir, which
 * is renamed into place when complete. Returns the source used.
 *
 * Refusals are FormErrors: PACK_BAD_MANIFEST, PACK_BAD_ARTIFACT (when every source failed that way),
 * else PACK_NOT_FOUND; `details.errors` lists each source's.
 */
export async function fetchFormpack(o: FetchFormpackOptions): Promise<string> {
  const short = o.id.slice(0, 12);
  if (!/^[0-9a-f]{64}$/.test(o.id)) {
    throw new FormError('BAD_REQUEST', `Cannot fetch Formpack ${JSON.stringify(short)}: not a Formpack id`);
  }
  const dest = join(o.formpacksDir, o.id);
  if (existsSync(join(dest, 'manifest.json'))) return 'local';
  const published = o.published;
  const names = Object.keys(published ?? {}).sort();
  if (!published || names.join() !== [...FORMPACK_ARTIFACTS].sort().join()) {
    throw new FormError(
      'PACK_BAD_ARTIFACT',
      `Cannot fetch Formpack ${short}: its owner's formpack.publish (the sha256 of ${FORMPACK_ARTIFACTS.join(', ')}) is ${published ? `incomplete (${names.join(', ') || 'none'})` : 'not known here'}`,
      { hint: 'Wait for state to sync the publish op; a Formpack nobody published is never fetched.' },
    );
  }
  const tmpRoot = join(o.formpacksDir, '..', 'formpacks-incoming');
  mkdirSync(tmpRoot, { recursive: true, mode: 0o700 });
  const errors: Array<{ source: string; code: string; message: string }> = [];
  for (const source of o.sources) {
    const src = sourceOf(source);
    const base = src.url;
    let tmp: string | undefined;
    try {
      const what = `the manifest from ${base}`;
      const audience = o.key ? await audienceOf(src) : '';
      const signed = (path: string): Record<string, string> =>
        o.key ? signRequest(o.key, { method: 'GET', path, body: '', audience }) : {};
      const manifestPath = `/formpacks/${o.id}/artifacts/manifest`;
      const mres = await nodeFetch(
        `${base}${manifestPath}`,
        { headers: signed(manifestPath), signal: AbortSignal.timeout(10_000) },
        { nodeKey: src.nodeKey },
      );
      if (!mres.ok || !mres.body) {
        await mres.body?.cancel();
        errors.push({ source: base, code: 'UNAVAILABLE', message: `HTTP ${mres.status}` });
        continue;
      }
      const manifest = parseFormpackManifest(await boundedJson(mres, FORMPACK_LIMITS.manifestBytes, what), what);
      if (manifest.id !== o.id) {
        throw new FormError('PACK_BAD_MANIFEST', `${base} answered Formpack ${manifest.id.slice(0, 12)} for ${short}`);
      }
      for (const name of FORMPACK_ARTIFACTS) {
        if (manifest.artifacts[name].sha256 !== published[name]) {
          throw new FormError('PACK_BAD_ARTIFACT', `${name} of ${short} differs from what its owner published`);
        }
      }
      tmp = mkdtempSync(join(tmpRoot, `${o.id}-`));
      const t0 = Date.now();
      let bytes = 0;
      for (const name of FORMPACK_ARTIFACTS) {
        const a = manifest.artifacts[name];
        // The file name is ours (FORMPACK_ARTIFACT_FILES); the schema already pinned the manifest's to it.
        const file = join(tmp, FORMPACK_ARTIFACT_FILES[name]);
        const path = `/formpacks/${o.id}/artifacts/${name}`;
        bytes += await download(`${base}${path}`, file, a.sha256, signed(path), a.bytes, src.nodeKey);
      }
      writeFileSync(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      mkdirSync(o.formpacksDir, { recursive: true });
      if (existsSync(join(dest, 'manifest.json'))) {
        rmSync(tmp, { recursive: true, force: true });
        return 'local';
      }
      rmSync(dest, { recursive: true, force: true });
      renameSync(tmp, dest);
      o.logger.info({ formpack: o.id, source: base, bytes, ms: Date.now() - t0 }, 'formpack fetched from a peer');
      return base;
    } catch (err) {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
      const code = isFormError(err) ? err.code : 'UNAVAILABLE';
      errors.push({ source: base, code, message: (err as Error).message });
      o.logger.warn(
        { formpack: o.id, source: base, code, err: (err as Error).message },
        'formpack not taken from this peer',
      );
    }
  }
  const codes = new Set(errors.map((e) => e.code));
  const only = codes.size === 1 ? [...codes][0] : undefined;
  throw new FormError(
    only === 'PACK_BAD_MANIFEST' || only === 'PACK_BAD_ARTIFACT' ? only : 'PACK_NOT_FOUND',
    `Cannot fetch Formpack ${short} from any node (${errors.map((e) => `${e.source}: ${e.message}`).join('; ') || 'no node to ask'})`,
    { details: { errors } },
  );
}

/** Where a node keeps revision files it fetched (named by sha256), beside its VMs' own. */
export function revisionCacheDir(dataDir: string): string {
  return join(dataDir, 'revisions');
}

/** Find a revision file by its sha256: one of this node's VMs' commits, or one it fetched. */
export function findRevisionFile(
  dataDir: string,
  vms: Array<{ id: string; revisions: Array<{ revision: number; sha256: string }> }>,
  sha256: string,
): string | null {
  for (const vm of vms) {
    const r = vm.revisions.find((x) => x.sha256 === sha256);
    if (r) {
      const f = join(dataDir, 'vms', vm.id, 'revisions', `rev-${r.revision}.qcow2`);
      if (existsSync(f)) return f;
    }
  }
  const cached = join(revisionCacheDir(dataDir), `${sha256}.qcow2`);
  return existsSync(cached) ? cached : null;
}

/** Download a revision (signed as this node; nodes serve revisions only to registered nodes), verified by sha256. */
export async function fetchRevision(o: {
  sources: Array<string | PeerSource>;
  sha256: string;
  dataDir: string;
  key: KeyPair;
  logger: Logger;
}): Promise<string> {
  if (!/^[0-9a-f]{64}$/.test(o.sha256)) {
    throw new FormError('BAD_REQUEST', `Cannot fetch revision ${JSON.stringify(o.sha256.slice(0, 64))}: not a sha256`);
  }
  const dir = revisionCacheDir(o.dataDir);
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, `${o.sha256}.qcow2`);
  if (existsSync(dest)) return dest;
  const errors: Array<{ source: string; code: string; message: string }> = [];
  for (const source of o.sources) {
    const src = sourceOf(source);
    const base = src.url;
    const path = `/revisions/${o.sha256}`;
    try {
      const t0 = Date.now();
      const bytes = await download(
        `${base}${path}`,
        dest,
        o.sha256,
        // signed for that node (its identity from GET /identity), so the request is good nowhere else
        signRequest(o.key, { method: 'GET', path, body: '', audience: await audienceOf(src) }),
        Number.POSITIVE_INFINITY,
        src.nodeKey,
      );
      // The hash only proves it is what the committing node announced: a hostile node announces a qcow2
      // whose data-file is a host disk. Refuse anything but a plain qcow2 (its backing name is replaced, unopened).
      await checkImage(resolve(dest), { format: 'qcow2', backing: 'replaced' }).catch((err: unknown) => {
        rmSync(dest, { force: true });
        throw err;
      });
      o.logger.info({ sha256: o.sha256, source: base, bytes, ms: Date.now() - t0 }, 'revision fetched from a peer');
      return dest;
    } catch (err) {
      errors.push({ source: base, code: isFormError(err) ? err.code : 'UNAVAILABLE', message: (err as Error).message });
    }
  }
  // Every node served something refused for one reason (an unsafe image, a wrong hash): say that.
  const codes = new Set(errors.map((e) => e.code));
  const only = codes.size === 1 ? [...codes][0] : undefined;
  throw new FormError(
    only === 'VM_IMAGE_UNSAFE' || only === 'VM_IMAGE_INVALID' || only === 'PACK_BAD_ARTIFACT' ? only : 'UNAVAILABLE',
    `Cannot fetch revision ${o.sha256.slice(0, 12)} from any node (${errors.map((e) => `${e.source}: ${e.message}`).join('; ') || 'no node to ask'})`,
    { details: { errors } },
  );
}

/** Drop fetched revision files no instance needs any more (all but the given hashes). */
export function pruneRevisionCache(dataDir: string, keep: Set<string>): void {
  const dir = revisionCacheDir(dataDir);
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    const sha = f.replace(/\.qcow2(\.part)?$/, '');
    if (!keep.has(sha)) rmSync(join(dir, f), { force: true });
  }
}
