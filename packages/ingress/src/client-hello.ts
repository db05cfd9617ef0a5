/**
 * A small, bounded reader of a TLS ClientHello's server name (SNI, RFC 6066) from the first bytes of a
 * connection, for routing without decrypting: it reads only the plaintext ClientHello, which TLS 1.0-1.3
 * all send first, in one or more handshake records. Everything else — garbage, SSLv2, a message over
 * `MAX_CLIENT_HELLO_BYTES`, a missing or malformed server name — is refused with a reason.
 * Pure: the caller feeds it the bytes received so far.
 */

/** Largest ClientHello (handshake message body) accepted: real ones are 0.2-2 KiB (with post-quantum key shares). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;
/** Largest TLS plaintext record (RFC 8446 5.1). */
const MAX_RECORD = 16 * 1024;
/** Record header: type, version, length. */
const RECORD_HEADER = 5;
/** Most bytes read before giving up: the message, plus a header per record at worst one byte per record. */
export const MAX_HELLO_READ_BYTES = MAX_CLIENT_HELLO_BYTES + 4 + RECORD_HEADER * 64;
const MAX_RECORDS = 64;

export type ClientHelloResult =
  /** Not enough bytes yet: read more (the caller bounds how many and how long). */
  { kind: 'more' } | { kind: 'ok'; serverName: string; alpn: string[] } | { kind: 'refused'; reason: string };

const refused = (reason: string): ClientHelloResult => ({ kind: 'refused', reason });

/**
 * Read the server name from the first bytes of a TLS connection.
 *
 * @example
 * const r = readClientHello(firstBytes);
 * if (r.kind === 'ok') route(r.serverName); else if (r.kind === 'refused') socket.destroy();
 */
export function readClientHello(buf: Uint8Array): ClientHelloResult {
  if (buf.length === 0) return { kind: 'more' };
  if (buf[0] !== 0x16) {
    return refused(buf[0]! & 0x80 ? 'an SSLv2 ClientHello (no server name)' : 'not a TLS handshake record');
  }
  // Reassemble the handshake message from consecutive handshake records.
  const parts: Uint8Array[] = [];
  let have = 0;
  let need = -1; // message length with its 4-byte header, once known
  let pos = 0;
  let records = 0;
  while (need < 0 || have < need) {
    if (pos + RECORD_HEADER > buf.length) return { kind: 'more' };
    if (buf[pos] !== 0x16) return refused('a non-handshake record inside the ClientHello');
    if (buf[pos + 1] !== 3 || buf[pos + 2]! > 4) return refused('an unknown record version');
    const len = (buf[pos + 3]! << 8) | buf[pos + 4]!;
    if (len === 0 || len > MAX_RECORD) return refused('a record length out of range');
    if (++records > MAX_RECORDS) return refused('a ClientHello split into too many records');
    const start = pos + RECORD_HEADER;
    const end = Math.min(start + len, buf.length);
    parts.push(buf.subarray(start, end));
    have += end - start;
    if (need < 0 && have >= 4) {
      const head = concat(parts, 4);
      if (head[0] !== 0x01) return refused('the first handshake message is not a ClientHello');
      const msgLen = (head[1]! << 16) | (head[2]! << 8) | head[3]!;
      if (msgLen > MAX_CLIENT_HELLO_BYTES) return refused(`a ClientHello larger than ${MAX_CLIENT_HELLO_BYTES} bytes`);
      if (msgLen < 38) return refused('a ClientHello too short to hold its fixed fields');
      need = 4 + msgLen;
    }
    if (end < start + len) {
      // The record is incomplete; enough if it already holds the whole message.
      if (need >= 0 && have >= need) break;
      return { kind: 'more' };
    }
    pos = end;
  }
  const msg = concat(parts, need);
  return parseBody(msg.subarray(4));
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    const take = Math.min(p.length, n - o);
    out.set(p.subarray(0, take), o);
    o += take;
    if (o >= n) break;
  }
  return out;
}

/** A cursor that refuses to read past its end. */
class Reader {
  pos = 0;
  readonly b: Uint8Array;
  constructor(b: Uint8Array) {
    this.b = b;
  }
  left(): number {
    return this.b.length - this.pos;
  }
  u8(): number | undefined {
    return this.pos + 1 <= this.b.length ? this.b[this.pos++] : undefined;
  }
  u16(): number | undefined {
    if (this.pos + 2 > this.b.length) return undefined;
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  bytes(n: number): Uint8Array | undefined {
    if (this.pos + n > this.b.length) return undefined;
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

function parseBody(body: Uint8Array): ClientHelloResult {
  const r = new Reader(body);
  const major = r.u8();
  const minor = r.u8();
  if (major !== 3 || minor === undefined || minor > 4) return refused('an unknown ClientHello version');
  if (!r.bytes(32)) return refused('a truncated random');
  const sid = r.u8();
  if (sid === undefined || sid > 32 || !r.bytes(sid)) return refused('a bad session id');
  const suites = r.u16();
  if (suites === undefined || suites < 2 || suites % 2 !== 0 || !r.bytes(suites)) return refused('bad cipher suites');
  const comp = r.u8();
  if (comp === undefined || comp < 1 || !r.bytes(comp)) return refused('bad compression methods');
  if (r.left() === 0) return refused('no extensions, so no server name');
  const extLen = r.u16();
  if (extLen === undefined || extLen !== r.left())
    return refused('an extensions length that does not match the message');
  const seen = new Set<number>();
  let serverName: string | undefined;
  let alpn: string[] = [];
  while (r.left() > 0) {
    const type = r.u16();
    const len = r.u16();
    if (type === undefined || len === undefined) return refused('a truncated extension header');
    const data = r.bytes(len);
    if (!data) return refused('a truncated extension');
    if (seen.has(type)) return refused(`extension ${type} given twice`);
    seen.add(type);
    if (type === 0x0000) {
      const name = parseServerName(data);
      if (typeof name !== 'string') return name;
      serverName = name;
    } else if (type === 0x0010) {
      const protocols = parseAlpn(data);
      if (!protocols) return refused('a malformed ALPN extension');
      alpn = protocols;
    }
  }
  if (serverName === undefined) return refused('no server name (SNI)');
  return { kind: 'ok', serverName, alpn };
}

/** RFC 6066 3: a list holding exactly one host_name; a DNS name, no trailing dot, no IP literal. */
function parseServerName(data: Uint8Array): string | ClientHelloResult {
  const r = new Reader(data);
  const listLen = r.u16();
  if (listLen === undefined || listLen !== r.left() || listLen === 0) return refused('a malformed server name list');
  let name: string | undefined;
  while (r.left() > 0) {
    const nameType = r.u8();
    const len = r.u16();
    if (nameType === undefined || len === undefined) return refused('a truncated server name');
    const bytes = r.bytes(len);
    if (!bytes) return refused('a truncated server name');
    if (nameType !== 0) continue; // unknown name types are skipped (RFC 6066)
    if (name !== undefined) return refused('two host names in one server name list');
    const text = Buffer.from(bytes).toString('latin1');
    const problem = hostProblem(text);
    if (problem) return refused(`a server name that ${problem}`);
    name = text.toLowerCase();
  }
  if (name === undefined) return refused('no host_name in the server name list');
  return name;
}

function parseAlpn(data: Uint8Array): string[] | undefined {
  const r = new Reader(data);
  const listLen = r.u16();
  if (listLen === undefined || listLen !== r.left()) return undefined;
  const out: string[] = [];
  while (r.left() > 0) {
    const len = r.u8();
    if (!len) return undefined;
    const p = r.bytes(len);
    if (!p) return undefined;
    out.push(Buffer.from(p).toString('latin1'));
  }
  return out;
}

/**
 * Why `host` is not a DNS name we route (letters, digits, '-', dots between labels of 1-63, ≤ 253 in
 * all, not all digits and dots), or undefined. Shared by SNI and the HTTP Host header.
 */
export function hostProblem(host: string): string | undefined {
  if (host.length === 0) return 'is empty';
  if (host.length > 253) return 'is longer than 253 characters';
  if (!/^[A-Za-z0-9.-]+$/.test(host)) return 'holds characters other than letters, digits, "-" and "."';
  if (/^[0-9.]+$/.test(host)) return 'is an IP address';
  for (const label of host.split('.')) {
    if (label.length === 0) return 'has an empty label';
    if (label.length > 63) return 'has a label longer than 63 characters';
    if (label.startsWith('-') || label.endsWith('-')) return 'has a label starting or ending with "-"';
  }
  return undefined;
}
