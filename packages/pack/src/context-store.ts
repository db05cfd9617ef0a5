import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FormError } from '@formation/interface';
import { type ArchiveLimits, DEFAULT_ARCHIVE_LIMITS, extractContext } from './archive.ts';

export interface ContextStoreOptions {
  /** Where the contexts live. The store owns it: it is emptied when the store opens and when it closes. */
  dir: string;
  /** Largest archive accepted as sent (default 1 GiB). */
  maxUploadBytes?: number;
  /** Limits on the extracted context (default DEFAULT_ARCHIVE_LIMITS). */
  limits?: ArchiveLimits;
  /** Contexts one owner may hold before building them (default 4; each may be limits.maxBytes). */
  maxPerOwner?: number;
  /** How long an unbuilt context is kept (default 1 h). */
  ttlMs?: number;
  /** The clock in ms (tests move it to expire contexts). */
  now?: () => number;
}

export const DEFAULT_CONTEXT_STORE = { maxUploadBytes: 1024 * 2 ** 20, maxPerOwner: 4, ttlMs: 60 * 60_000 };

/** What an upload stored: its ID (24 hex) and what the archive held. */
export interface StoredContext {
  contextId: string;
  entries: number;
  bytes: number;
}

/** A context taken out of the store to build: its files are the taker's until `release()` deletes them. */
export interface TakenContext {
  dir: string;
  owner: string;
  /** Delete the context's files (idempotent). */
  release(): void;
}

interface Held {
  dir: string;
  owner: string;
  expires: number;
}

/**
 * Uploaded build contexts waiting to be built: each is a checked, extracted archive (see
 * `extractContext`) held for one owner until it is taken once, expires, or the store closes. One
 * owner may hold only `maxPerOwner` at a time, so nobody fills the node's disk with contexts they never
 * build.
 *
 * @example
 * const store = new ContextStore({ dir: join(dataDir, 'pack-contexts') });
 * const { contextId } = await store.put(signer.address, body, sha256Hex);
 * const ctx = store.take(contextId, signer.address);
 * try { await builder.build({ spec, dir: ctx.dir, owner: ctx.owner }); } finally { ctx.release(); }
 */
export class ContextStore {
  readonly dir: string;
  private readonly maxUploadBytes: number;
  private readonly limits: ArchiveLimits;
  private readonly maxPerOwner: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly held = new Map<string, Held>();

  constructor(opts: ContextStoreOptions) {
    this.dir = opts.dir;
    this.maxUploadBytes = opts.maxUploadBytes ?? DEFAULT_CONTEXT_STORE.maxUploadBytes;
    this.limits = opts.limits ?? DEFAULT_ARCHIVE_LIMITS;
    this.maxPerOwner = opts.maxPerOwner ?? DEFAULT_CONTEXT_STORE.maxPerOwner;
    this.ttlMs = opts.ttlMs ?? DEFAULT_CONTEXT_STORE.ttlMs;
    this.now = opts.now ?? Date.now;
    // Contexts of an earlier run were never built by this one: nothing refers to them any more.
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Contexts `owner` holds now (expired ones count until the next sweep). */
  heldBy(owner: string): number {
    let n = 0;
    for (const c of this.held.values()) if (c.owner === owner) n++;
    return n;
  }

  /** Forget and delete the contexts whose time is up. */
  sweep(): void {
    const now = this.now();
    for (const [id, c] of this.held) {
      if (c.expires < now) {
        this.held.delete(id);
        rmSync(c.dir, { recursive: true, force: true });
      }
    }
  }

  /** Sweep, then refuse (PACK_QUEUE_FULL) when `owner` already holds `maxPerOwner` contexts. */
  assertRoom(owner: string): void {
    this.sweep();
    if (this.heldBy(owner) >= this.maxPerOwner) {
      throw new FormError(
        'PACK_QUEUE_FULL',
        `Cannot accept the build context: ${owner} already has ${this.maxPerOwner} uploaded contexts not built yet`,
        { hint: 'Build them (POST /builds) or wait an hour for them to expire, then upload again.' },
      );
    }
  }

  /**
   * Store the tar (or tar.gz) `body` for `owner`. Refused: an owner without room (PACK_QUEUE_FULL; the
   * body is drained), more than maxUploadBytes or an archive `extractContext` refuses
   * (PACK_BAD_ARCHIVE), a body whose sha256 is not `sha256` (AUTH_BAD_SIGNATURE: it is what the
   * signature covers), a full disk (DISK_FULL). A refused upload leaves no file behind.
   */
  async put(owner: string, body: Readable, sha256: string): Promise<StoredContext> {
    try {
      this.assertRoom(owner);
    } catch (err) {
      body.resume();
      throw err;
    }
    const contextId = randomBytes(12).toString('hex');
    const tarFile = join(this.dir, `${contextId}.tar`);
    const dir = join(this.dir, contextId);
    try {
      const sha = await this.receive(body, tarFile);
      if (sha !== sha256) {
        throw new FormError(
          'AUTH_BAD_SIGNATURE',
          'Cannot accept the build context: its sha256 does not match x-form-content-sha256',
        );
      }
      const r = await extractContext(tarFile, dir, this.limits);
      this.held.set(contextId, { dir, owner, expires: this.now() + this.ttlMs });
      return { contextId, entries: r.entries, bytes: r.bytes };
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    } finally {
      rmSync(tarFile, { force: true });
    }
  }

  /**
   * Take `owner`'s context out of the store to build it (a context is built once). Refused: an ID the
   * store does not hold or that has expired (NOT_FOUND), another owner's context (AUTH_FORBIDDEN; it
   * stays stored).
   */
  take(contextId: string, owner: string): TakenContext {
    // Sweeping only on upload let an hour-old context be built as long as nobody uploaded since.
    this.sweep();
    const c = this.held.get(contextId);
    if (!c)
      throw new FormError('NOT_FOUND', `Cannot build: no uploaded context ${contextId}`, {
        hint: 'Upload it with POST /contexts first (contexts expire after an hour and are used once).',
      });
    if (c.owner !== owner)
      throw new FormError('AUTH_FORBIDDEN', 'Cannot build: this context was uploaded by another key');
    this.held.delete(contextId);
    return { dir: c.dir, owner: c.owner, release: () => rmSync(c.dir, { recursive: true, force: true }) };
  }

  /** Delete every context, held or taken (the service is stopping; its builds were aborted). */
  close(): void {
    this.held.clear();
    for (const name of existsSync(this.dir) ? readdirSync(this.dir) : []) {
      rmSync(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** Write `body` to `file`, at most maxUploadBytes; its sha256 hex. */
  private receive(body: Readable, file: string): Promise<string> {
    const max = this.maxUploadBytes;
    return new Promise<string>((resolve, reject) => {
      const h = createHash('sha256');
      let n = 0;
      const out = createWriteStream(file);
      body.on('data', (c: Buffer) => {
        n += c.length;
        h.update(c);
        if (n > max) {
          body.destroy();
          out.destroy();
          reject(
            new FormError(
              'PACK_BAD_ARCHIVE',
              `Cannot accept the build context: the upload is over ${Math.round(max / 2 ** 20)} MiB`,
            ),
          );
        }
      });
      body.on('error', reject);
      out.on('error', (err) =>
        reject(
          (err as NodeJS.ErrnoException).code === 'ENOSPC'
            ? new FormError('DISK_FULL', 'Cannot store the upload: no space left on the node')
            : err,
        ),
      );
      body.pipe(out).on('finish', () => resolve(h.digest('hex')));
    });
  }
}
