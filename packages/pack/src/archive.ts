import { createReadStream, createWriteStream, lstatSync, mkdirSync, symlinkSync, type WriteStream } from 'node:fs';
import { join, posix } from 'node:path';
import { FormError } from '@formation/interface';
import { Parser, type ReadEntry } from 'tar';

/** Limits on an uploaded build context. */
export interface ArchiveLimits {
  /** Total bytes of file content after extraction (tar bomb guard). */
  maxBytes: number;
  maxEntries: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = { maxBytes: 2 * 2 ** 30, maxEntries: 100_000 };

function bad(message: string, hint?: string): FormError {
  return new FormError('PACK_BAD_ARCHIVE', `Cannot accept the build context: ${message}`, hint ? { hint } : {});
}

/** A safe relative path from an archive entry name (no absolute paths, no `..`, no NUL). */
export function safeEntryPath(name: string): string {
  const raw = name.replaceAll('\\', '/');
  if (raw.includes('\0')) throw bad(`entry ${JSON.stringify(name)} has a NUL byte in its name`);
  if (raw.startsWith('/')) throw bad(`entry ${name} has an absolute path`);
  if (raw.split('/').includes('..')) throw bad(`entry ${name} points outside the build directory (..)`);
  const n = posix.normalize(raw).replace(/\/+$/, '');
  if (n === '' || n === '.') return '.';
  return n.replace(/^\.\//, '');
}

/** A symlink target that stays inside the context: relative, without `..`. */
function checkLinkTarget(rel: string, target: string): void {
  if (target.startsWith('/') || target.split('/').includes('..') || target.includes('\0')) {
    throw bad(
      `symlink ${rel} -> ${target} points outside the build directory`,
      'Archive the file itself, not a link to it.',
    );
  }
}

/** Refuse to write through a symlink created by an earlier entry. */
function assertNoLinkOnPath(root: string, rel: string): void {
  const parts = rel.split('/');
  let cur = root;
  for (const p of parts.slice(0, -1)) {
    cur = join(cur, p);
    try {
      const st = lstatSync(cur);
      if (st.isSymbolicLink()) throw bad(`entry ${rel} would be written through the symlink ${p}`);
      if (!st.isDirectory()) throw bad(`entry ${rel} is inside ${p}, which is not a directory`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
  }
}

/**
 * Extract an uploaded tar (optionally gzip) build context into `dest`, refusing path traversal,
 * links out of the context, hard links, device files, FIFOs, truncated archives and tar bombs.
 */
export async function extractContext(
  file: string,
  dest: string,
  limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS,
): Promise<{ entries: number; bytes: number }> {
  mkdirSync(dest, { recursive: true });
  let bytes = 0;
  let entries = 0;
  let failure: unknown;
  const writes: Array<Promise<void>> = [];
  // Files being written and their entries: a damaged or cut-short archive can stop the parser in the
  // middle of an entry, whose stream then never ends (the extraction hung on such an upload).
  const open = new Map<WriteStream, ReadEntry>();
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onwarn: (code: string, message: string | Error) => {
        failure ??= bad(
          `the archive is damaged or truncated (${code}: ${message instanceof Error ? message.message : message})`,
        );
      },
    });
    parser.on('entry', (entry: ReadEntry) => {
      if (failure) return entry.resume();
      try {
        const rel = safeEntryPath(entry.path);
        if (++entries > limits.maxEntries)
          throw bad(`more than ${limits.maxEntries} entries`, 'Upload only what the Formfile needs.');
        if (rel === '.') return entry.resume();
        assertNoLinkOnPath(dest, rel);
        const abs = join(dest, rel);
        switch (entry.type) {
          case 'Directory':
            mkdirSync(abs, { recursive: true, mode: 0o755 });
            return entry.resume();
          case 'File':
          case 'OldFile':
          case 'ContiguousFile': {
            bytes += entry.size ?? 0;
            if (bytes > limits.maxBytes) {
              throw bad(
                `it expands to more than ${Math.round(limits.maxBytes / 2 ** 20)} MiB`,
                'Is this a tar bomb? Upload only what the Formfile needs.',
              );
            }
            mkdirSync(join(abs, '..'), { recursive: true });
            const out = createWriteStream(abs, { flags: 'wx', mode: ((entry.mode ?? 0o644) & 0o755) | 0o600 });
            open.set(out, entry);
            writes.push(
              new Promise((res, rej) => {
                out.on('finish', () => {
                  open.delete(out);
                  res();
                });
                out.on('error', rej);
              }),
            );
            entry.pipe(out);
            return;
          }
          case 'SymbolicLink':
            checkLinkTarget(rel, entry.linkpath ?? '');
            mkdirSync(join(abs, '..'), { recursive: true });
            symlinkSync(entry.linkpath ?? '', abs);
            return entry.resume();
          case 'Link':
            throw bad(`${rel} is a hard link; hard links are not supported`);
          case 'CharacterDevice':
          case 'BlockDevice':
            throw bad(`${rel} is a device file`);
          case 'FIFO':
            throw bad(`${rel} is a FIFO`);
          default:
            throw bad(`${rel} has unsupported type ${entry.type}`);
        }
      } catch (err) {
        failure ??= err;
        entry.resume();
      }
    });
    parser.on('error', (err: Error) => {
      failure ??= bad(`the archive is damaged or truncated (${err.message})`);
      resolve();
    });
    parser.on('end', () => resolve());
    parser.on('close', () => resolve());
    const input = createReadStream(file);
    input.on('error', reject);
    input.pipe(parser as unknown as NodeJS.WritableStream);
  });
  // The parser is done: an entry it did not feed to its end (or any open file of an archive found
  // damaged) is cut off with the reason instead of waited for.
  for (const [out, entry] of open) {
    if (!failure && entry.remain === 0) continue;
    failure ??= bad(`the archive is damaged or truncated (${entry.path} ends early)`);
    entry.unpipe(out);
    out.destroy(failure as Error);
  }
  try {
    await Promise.all(writes);
  } catch (err) {
    failure ??= err;
  }
  if (!failure && entries === 0) failure = bad('the archive is empty');
  if (failure) {
    if ((failure as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new FormError('DISK_FULL', 'Cannot store the build context: no space left on the node');
    }
    throw failure;
  }
  return { entries, bytes };
}
