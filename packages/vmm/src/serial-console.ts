// Reading a VM's serial console file: the text after an offset (readiness), the last bytes (console, errors).
import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** The text of `path` from `offset` on (at most the last `max` bytes); '' when unreadable. */
export function readFrom(path: string, offset: number, max = 1 << 20): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    const start = Math.max(offset, size - max);
    if (size <= start) return '';
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The last `bytes` of `path`; '' when unreadable. */
export function tail(path: string, bytes: number): string {
  try {
    const size = statSync(path).size;
    return readFrom(path, Math.max(0, size - bytes), bytes);
  } catch {
    return '';
  }
}
