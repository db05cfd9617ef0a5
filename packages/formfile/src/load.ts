import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FormError } from '@formation/interface';
import { MAX_FORMFILE_BYTES } from './parser.ts';

export interface LoadedFormfile {
  /** Absolute path of the Formfile read. */
  path: string;
  /** Absolute path of the build directory. */
  dir: string;
  text: string;
}

/**
 * Read the Formfile of build directory `dir` (`file` defaults to `Formfile`, relative to `dir` unless
 * absolute). Throws a FormError with a clear message for a missing directory or file, a Formfile that is a
 * directory, an unreadable file, a file over 1 MiB and binary content (NUL bytes, invalid UTF-8).
 *
 * @example
 * const { text, path } = await loadFormfile('examples/hello-server');
 */
export async function loadFormfile(dir: string, file = 'Formfile'): Promise<LoadedFormfile> {
  const absDir = resolve(dir);
  const dirStat = await stat(absDir).catch((err: NodeJS.ErrnoException) => err);
  if (dirStat instanceof Error) {
    if (dirStat.code === 'ENOENT' || dirStat.code === 'ENOTDIR') {
      throw new FormError('FORMFILE_NOT_FOUND', `Cannot read Formfile: directory ${dir} does not exist`, {
        hint: 'Pass the build directory that holds your Formfile, e.g. `form pack validate examples/hello-server`.',
      });
    }
    throw new FormError(
      'FORMFILE_UNREADABLE',
      `Cannot read Formfile: cannot open ${dir}: ${dirStat.code ?? dirStat.message}`,
    );
  }
  if (!dirStat.isDirectory()) {
    throw new FormError('FORMFILE_NOT_FOUND', `Cannot read Formfile: ${dir} is a file, not a build directory`, {
      hint: 'Pass the directory that holds it; use -f to name a Formfile with another name.',
    });
  }
  const path = resolve(absDir, file);
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new FormError('FORMFILE_NOT_FOUND', `Cannot read Formfile: ${path} does not exist`, {
        hint: `Create a Formfile in ${dir} (see examples/hello-server/Formfile), or name another file with -f.`,
      });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile: permission denied for ${path}`, {
        hint: 'Make it readable (chmod a+r) or run as a user who may read it.',
      });
    }
    throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile ${path}: ${code ?? (err as Error).message}`);
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) {
      throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile: ${path} is a directory, not a file`, {
        hint: 'The Formfile must be a text file; rename the directory or pass another file with -f.',
      });
    }
    if (!st.isFile()) {
      throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile: ${path} is not a regular file`);
    }
    if (st.size > MAX_FORMFILE_BYTES) throw tooLarge(path, st.size);
    // Read at most one byte past the limit: the file may grow between stat and read.
    const buf = Buffer.alloc(MAX_FORMFILE_BYTES + 1);
    let n = 0;
    for (;;) {
      let r: { bytesRead: number };
      try {
        r = await handle.read(buf, n, buf.length - n, n);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EISDIR') {
          throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile: ${path} is a directory, not a file`);
        }
        throw new FormError('FORMFILE_UNREADABLE', `Cannot read Formfile ${path}: ${code ?? (err as Error).message}`);
      }
      if (r.bytesRead === 0) break;
      n += r.bytesRead;
      if (n > MAX_FORMFILE_BYTES) throw tooLarge(path, n);
    }
    return { path, dir: absDir, text: decode(buf.subarray(0, n), path) };
  } finally {
    await handle.close();
  }
}

function tooLarge(path: string, size: number): FormError {
  return new FormError(
    'FORMFILE_TOO_LARGE',
    `Cannot read Formfile: ${path} is ${size > MAX_FORMFILE_BYTES * 2 ? `${(size / 1024 / 1024).toFixed(1)} MiB` : `over 1 MiB`}; a Formfile may be at most 1 MiB`,
    { hint: 'A Formfile describes the VM; put your application files in the build directory and COPY them.' },
  );
}

/** Decode UTF-8 strictly; binary content gets a FORMFILE_BINARY error with the line of the first bad byte. */
function decode(bytes: Buffer, path: string): string {
  const nul = bytes.indexOf(0);
  let bad = nul;
  let text: string | undefined;
  if (nul === -1) {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      bad = firstInvalidUtf8(bytes);
    }
  }
  if (text !== undefined) return text;
  const line = countLines(bytes, bad);
  throw new FormError(
    'FORMFILE_BINARY',
    `Cannot read Formfile: ${path} is not a UTF-8 text file (${nul !== -1 ? 'NUL byte' : 'invalid UTF-8'} on line ${line})`,
    { hint: 'A Formfile is plain text; did you pass a binary or a compressed file?', details: { line } },
  );
}

function countLines(bytes: Buffer, upTo: number): number {
  let line = 1;
  for (let i = 0; i < upTo && i < bytes.length; i++) if (bytes[i] === 0x0a) line++;
  return line;
}

function firstInvalidUtf8(bytes: Buffer): number {
  // Binary search for the shortest prefix that fails: fine for <= 1 MiB.
  let lo = 0;
  let hi = bytes.length;
  const dec = new TextDecoder('utf-8', { fatal: true });
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    try {
      dec.decode(bytes.subarray(0, mid + 1), { stream: true });
      lo = mid + 1;
    } catch {
      hi = mid;
    }
  }
  return lo;
}
