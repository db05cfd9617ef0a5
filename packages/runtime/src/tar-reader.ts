import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { FormError } from '@formation/interface';

/**
 * A small tar reader for hostile input (image archives and layers from anyone): ustar, GNU long
 * names/links and pax headers; every malformed header, bad checksum, truncation or unsupported entry
 * type is a `RUNTIME_IMAGE_INVALID` FormError. It only reads: what to do with an entry (and whether
 * its path is safe) is the caller's business.
 */
export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface TarEntry {
  path: string;
  type: TarEntryType;
  /** Target of a symlink or hard link ('' otherwise). */
  linkpath: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
}

export interface TarLimits {
  /** Largest uncompressed archive (stops gzip bombs). Default 32 GiB. */
  maxBytes?: number;
  /** Most entries. Default 1,000,000. */
  maxEntries?: number;
}

const MAX_META = 1024 * 1024; // pax headers and GNU long names
const MAX_PATH = 4096;

function bad(what: string, detail: string): FormError {
  return new FormError('RUNTIME_IMAGE_INVALID', `Cannot read ${what}: ${detail}`, {
    hint: 'The archive is damaged or was not written by tar / `docker save`; export it again.',
  });
}

/** Exact-size reads over a stream of chunks. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Buffer> | Iterator<Buffer>;
  private readonly maxBytes: number;
  private readonly what: string;
  private done = false;
  total = 0;

  constructor(source: AsyncIterable<Buffer> | Iterable<Buffer>, maxBytes: number, what: string) {
    this.it = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
    this.maxBytes = maxBytes;
    this.what = what;
  }

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.done) {
      let r: IteratorResult<Buffer>;
      try {
        r = await this.it.next();
      } catch (err) {
        throw bad(this.what, `the data is corrupt (${(err as Error).message})`);
      }
      if (r.done) {
        this.done = true;
        break;
      }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      this.total += chunk.length;
      if (this.total > this.maxBytes) throw bad(this.what, `it is larger than ${this.maxBytes} bytes unpacked`);
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    }
    return this.buf.length >= n;
  }

  /** Exactly n bytes, or undefined at a clean end of stream (nothing left). Throws on a partial read. */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.buf.length === 0) return undefined;
      throw bad(this.what, 'it ends in the middle of an entry (truncated)');
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Up to n bytes (at least 1), for streaming bodies. */
  async chunk(n: number): Promise<Buffer> {
    if (!(await this.fill(1))) throw bad(this.what, 'it ends in the middle of an entry (truncated)');
    const k = Math.min(n, this.buf.length);
    const out = this.buf.subarray(0, k);
    this.buf = this.buf.subarray(k);
    return out;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function cstring(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return (z >= 0 ? s.subarray(0, z) : s).toString('utf8');
}

function number(b: Buffer, off: number, len: number, field: string, what: string): number {
  const s = b.subarray(off, off + len);
  if (((s[0] ?? 0) & 0x80) !== 0) {
    // base-256 (GNU): big-endian two's complement; we accept non-negative values below 2^53
    if (((s[0] ?? 0) & 0x40) !== 0) throw bad(what, `negative ${field} in a header`);
    let v = (s[0] ?? 0) & 0x3f;
    for (let i = 1; i < s.length; i++) {
      v = v * 256 + (s[i] ?? 0);
      if (v > Number.MAX_SAFE_INTEGER) throw bad(what, `${field} too large in a header`);
    }
    return v;
  }
  const text = s
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw bad(what, `malformed ${field} in a header (${JSON.stringify(text)})`);
  return Number.parseInt(text, 8);
}

function parsePax(data: Buffer, what: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break;
    const sp = data.indexOf(0x20, i);
    if (sp < 0 || sp - i > 10) throw bad(what, 'malformed pax header record');
    const lenText = data.subarray(i, sp).toString('latin1');
    if (!/^[0-9]+$/.test(lenText)) throw bad(what, 'malformed pax header record length');
    const len = Number(lenText);
    if (len <= sp - i + 1 || i + len > data.length || data[i + len - 1] !== 0x0a)
      throw bad(what, 'malformed pax header record');
    const rec = data.subarray(sp + 1, i + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq <= 0) throw bad(what, 'malformed pax header record');
    out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/**
 * Read a tar stream entry by entry. `onEntry` may consume `body` (the entry's bytes); what it leaves
 * is skipped. Resolves at the end-of-archive marker (or a clean end of stream).
 */
export async function readTar(
  source: AsyncIterable<Buffer> | Iterable<Buffer>,
  onEntry: (entry: TarEntry, body: AsyncIterable<Buffer>) => Promise<void> | void,
  opts: TarLimits & { what?: string } = {},
): Promise<void> {
  const what = opts.what ?? 'the archive';
  const maxEntries = opts.maxEntries ?? 1_000_000;
  const r = new ByteReader(source, opts.maxBytes ?? 32 * 1024 ** 3, what);
  let entries = 0;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      let h: Buffer | undefined;
      try {
        h = await r.read(512);
      } catch (err) {
        if (entries === 0 && r.total < 512 && /truncated/.test((err as Error).message))
          throw bad(what, 'it is not a tar archive (shorter than one header)');
        throw err;
      }
      if (!h || h.every((b) => b === 0)) return;
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
      const stored = number(h, 148, 8, 'checksum', what);
      if (stored !== sum) throw bad(what, 'a header checksum does not match (not a tar archive, or damaged)');
      const flag = String.fromCharCode(h[156] ?? 0);
      let size = number(h, 124, 12, 'size', what);
      const meta = flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K';
      if (meta) {
        if (size > MAX_META) throw bad(what, `a ${flag} header of ${size} bytes is too large`);
        const data = size > 0 ? await r.read(size) : Buffer.alloc(0);
        if (data === undefined) throw bad(what, 'it ends in the middle of an entry (truncated)');
        const pad = (512 - (size % 512)) % 512;
        if (pad > 0 && (await r.read(pad)) === undefined)
          throw bad(what, 'it ends in the middle of an entry (truncated)');
        if (flag === 'x') pax = parsePax(data, what);
        else if (flag === 'L') longName = cstring(data, 0, data.length);
        else if (flag === 'K') longLink = cstring(data, 0, data.length);
        continue;
      }
      if (++entries > maxEntries) throw bad(what, `it has more than ${maxEntries} entries`);
      const magic = h.subarray(257, 263).toString('latin1');
      let name = cstring(h, 0, 100);
      if (magic === 'ustar\0') {
        const prefix = cstring(h, 345, 155);
        if (prefix) name = `${prefix}/${name}`;
      }
      name = pax.get('path') ?? longName ?? name;
      const linkpath = pax.get('linkpath') ?? longLink ?? cstring(h, 157, 100);
      if (pax.has('size')) {
        const s = pax.get('size') ?? '';
        if (!/^[0-9]{1,16}$/.test(s)) throw bad(what, 'malformed pax size');
        size = Number(s);
      }
      const paxId = (k: string, fallback: number) => {
        const v = pax.get(k);
        if (v === undefined) return fallback;
        if (!/^[0-9]{1,10}$/.test(v)) throw bad(what, `malformed pax ${k}`);
        return Number(v);
      };
      const uid = paxId('uid', number(h, 108, 8, 'uid', what));
      const gid = paxId('gid', number(h, 116, 8, 'gid', what));
      pax = new Map();
      longName = undefined;
      longLink = undefined;
      let type = TYPES[flag];
      if (type === undefined)
        throw bad(what, `entry ${JSON.stringify(name.slice(0, 200))} has unsupported type ${JSON.stringify(flag)}`);
      if (type === 'file' && flag !== '7' && name.endsWith('/')) type = 'dir'; // old tars
      if (name === '' || name.length > MAX_PATH || name.includes('\0') || linkpath.length > MAX_PATH)
        throw bad(what, 'an entry has an empty, overlong or malformed name');
      // only regular files carry data; a size on anything else is skipped like tar does (except links: 0)
      const bodySize = type === 'file' ? size : type === 'dir' ? 0 : size;
      let left = bodySize;
      const body: AsyncIterable<Buffer> = {
        async *[Symbol.asyncIterator]() {
          while (left > 0) {
            const c = await r.chunk(Math.min(left, 1 << 20));
            left -= c.length;
            yield c;
          }
        },
      };
      await onEntry(
        { path: name, type, linkpath, mode: number(h, 100, 8, 'mode', what) & 0o7777, uid, gid, size: bodySize },
        body,
      );
      while (left > 0) left -= (await r.chunk(Math.min(left, 1 << 20))).length;
      const pad = (512 - (bodySize % 512)) % 512;
      if (pad > 0 && (await r.read(pad)) === undefined)
        throw bad(what, 'it ends in the middle of an entry (truncated)');
    }
  } finally {
    await r.close();
  }
}

/** The bytes of a tar file, gunzipped when it starts with the gzip magic. */
export async function tarFileStream(file: string, what: string): Promise<AsyncIterable<Buffer>> {
  let gz = false;
  const fh = await open(file, 'r').catch((err: Error) => {
    throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot read ${what}: ${err.message}`, {
      hint: 'Check the path: it must be a readable `docker save` archive (tar or tar.gz).',
    });
  });
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, 0);
    gz = bytesRead === 2 && b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
  const src = createReadStream(file);
  if (!gz) return src;
  const gunzip = createGunzip();
  // pipeline: destroying the gunzip stream (early end, error) closes the file too
  pipeline(src, gunzip, () => undefined);
  return gunzip;
}

/** `readTar` over a file (plain or gzip). */
export async function readTarFile(
  file: string,
  onEntry: (entry: TarEntry, body: AsyncIterable<Buffer>) => Promise<void> | void,
  opts: TarLimits & { what?: string } = {},
): Promise<void> {
  const what = opts.what ?? file;
  const stream = await tarFileStream(file, what);
  try {
    await readTar(stream, onEntry, { ...opts, what });
  } finally {
    (stream as unknown as { destroy?: () => void }).destroy?.();
  }
}
