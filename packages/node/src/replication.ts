import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { type KeyPair, signRequest } from '@formation/identity';
import { DEFAULT_PORTS, FormError, type FormpackManifest } from '@formation/interface';
import { ApiClient, type Logger } from '@formation/service';
import type { NodeView } from '@formation/state';

const run = promisify(execFile);
const ARTIFACTS = ['disk', 'kernel', 'initramfs'] as const;

/**
 * Where another node's HTTP API is: the host of its registered endpoint (or `peerApiHost` when all
 * nodes share one host's loopback, as in a devnet) and the service's port shifted by the node's port
 * offset (read from its registered p2p port).
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
  return `http://${host.includes(':') ? `[${host}]` : host}:${DEFAULT_PORTS[service] + offset}`;
}

/** Stream a URL to `dest` (via a temp file) hashing it; refused unless its sha256 is `sha256`. */
async function download(
  url: string,
  dest: string,
  sha256: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(600_000) });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    throw new FormError('UNAVAILABLE', `Cannot download ${url}: HTTP ${res.status}`);
  }
  const tmp = `${dest}.part`;
  const h = createHash('sha256');
  let bytes = 0;
  const src = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  src.on('data', (c: Buffer) => {
    h.update(c);
    bytes += c.length;
  });
  try {
    await pipeline(src, createWriteStream(tmp));
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const got = h.digest('hex');
  if (got !== sha256) {
    rmSync(tmp, { force: true });
    throw new FormError(
      'UNAVAILABLE',
      `Refused ${url}: sha256 ${got.slice(0, 12)}… is not the expected ${sha256.slice(0, 12)}…`,
    );
  }
  renameSync(tmp, dest);
  return bytes;
}

export interface FetchFormpackOptions {
  id: string;
  /** Pack API base URLs of nodes that may have it, best first. */
  sources: string[];
  formpacksDir: string;
  /** sha256 of each artifact as the owner published it (`formpack.publish`), when known. */
  published?: Record<string, string> | undefined;
  logger: Logger;
}

/**
 * Copy a Formpack from another node's pack API into this node's formpacks dir: the manifest must
 * carry the requested ID, every artifact must hash to the manifest's sha256 (and to the owner's
 * signed `formpack.publish`, when present). Built in a temp dir and renamed, so a half copy never
 * looks like a Formpack. Returns the source used.
 */
export async function fetchFormpack(o: FetchFormpackOptions): Promise<string> {
  const dest = join(o.formpacksDir, o.id);
  if (existsSync(join(dest, 'manifest.json'))) return 'local';
  const tmpRoot = join(o.formpacksDir, '..', 'formpacks-incoming');
  mkdirSync(tmpRoot, { recursive: true });
  const errors: string[] = [];
  for (const base of o.sources) {
    const tmp = join(tmpRoot, `${o.id}-${process.pid}-${Date.now()}`);
    try {
      const mres = await fetch(`${base}/formpacks/${o.id}/artifacts/manifest`, { signal: AbortSignal.timeout(10_000) });
      if (!mres.ok) {
        await mres.body?.cancel();
        errors.push(`${base}: HTTP ${mres.status}`);
        continue;
      }
      const manifest = (await mres.json()) as FormpackManifest;
      if (manifest.id !== o.id)
        throw new FormError('UNAVAILABLE', `${base} answered Formpack ${manifest.id} for ${o.id}`);
      mkdirSync(tmp, { recursive: true });
      const t0 = Date.now();
      let bytes = 0;
      for (const name of ARTIFACTS) {
        const a = manifest.artifacts[name];
        const expected = o.published?.[name];
        if (expected && expected !== a.sha256) {
          throw new FormError('UNAVAILABLE', `${base}: ${name} of ${o.id} differs from what its owner published`);
        }
        bytes += await download(`${base}/formpacks/${o.id}/artifacts/${name}`, join(tmp, a.file), a.sha256);
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
      rmSync(tmp, { recursive: true, force: true });
      errors.push(`${base}: ${(err as Error).message}`);
    }
  }
  throw new FormError(
    'PACK_NOT_FOUND',
    `Cannot fetch Formpack ${o.id.slice(0, 12)} from any node (${errors.join('; ') || 'no node to ask'})`,
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
  sources: string[];
  sha256: string;
  dataDir: string;
  key: KeyPair;
  logger: Logger;
}): Promise<string> {
  const dir = revisionCacheDir(o.dataDir);
  mkdirSync(dir, { recursive: true });
  const dest = join(dir, `${o.sha256}.qcow2`);
  if (existsSync(dest)) return dest;
  const errors: string[] = [];
  for (const base of o.sources) {
    const path = `/revisions/${o.sha256}`;
    try {
      const t0 = Date.now();
      const bytes = await download(
        `${base}${path}`,
        dest,
        o.sha256,
        // signed for that node (its identity from GET /identity), so the request is good nowhere else
        signRequest(o.key, {
          method: 'GET',
          path,
          body: '',
          audience: await new ApiClient(base, undefined, 10_000).audience(),
        }),
      );
      o.logger.info({ sha256: o.sha256, source: base, bytes, ms: Date.now() - t0 }, 'revision fetched from a peer');
      return dest;
    } catch (err) {
      errors.push(`${base}: ${(err as Error).message}`);
    }
  }
  throw new FormError(
    'UNAVAILABLE',
    `Cannot fetch revision ${o.sha256.slice(0, 12)} from any node (${errors.join('; ') || 'no node to ask'})`,
  );
}

/**
 * Make a stopped VM's overlay the given revision: copy the revision file over the overlay, then point
 * its backing file at this node's copy of the base image (the revision names the committing node's path).
 */
export async function applyRevisionToDisk(disk: string, revisionFile: string): Promise<void> {
  const { stdout } = await run('qemu-img', ['info', '-U', '--output=json', disk]);
  const info = JSON.parse(stdout) as {
    'full-backing-filename'?: string;
    'backing-filename'?: string;
    'backing-filename-format'?: string;
  };
  const backing = info['full-backing-filename'] ?? info['backing-filename'];
  const fmt = info['backing-filename-format'] ?? 'qcow2';
  const tmp = `${disk}.rev`;
  await pipeline(createReadStream(revisionFile), createWriteStream(tmp));
  if (backing) await run('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', backing, '-F', fmt, tmp]);
  renameSync(tmp, disk);
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
