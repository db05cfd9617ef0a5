import { hostProblem } from './client-hello.ts';

export type HttpHeadResult =
  | { kind: 'more' }
  /** `host` is lower case, without port; `headBytes` is where the head ends (the body starts). */
  | { kind: 'ok'; host: string; headBytes: number }
  | { kind: 'refused'; status: 400 | 431; reason: string };

const bad = (reason: string): HttpHeadResult => ({ kind: 'refused', status: 400, reason });

/**
 * The host an HTTP/1.x request is for, from the request head received so far (bounded by `maxBytes`):
 * the authority of an absolute-form target, else the one Host header. Refuses what a careful server
 * refuses (RFC 9112): no or several Host headers, whitespace before a colon, folded lines, a head over
 * `maxBytes` (431). Pure.
 *
 * @example
 * readHttpHead(Buffer.from('GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n'), 16384)
 * // { kind: 'ok', host: 'shop.example.com', headBytes: 42 }
 */
export function readHttpHead(buf: Uint8Array, maxBytes: number): HttpHeadResult {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  // The request line arrives first: refuse a non-HTTP client without waiting for a whole head.
  const firstLine = b.indexOf('\n');
  const line0 = b.subarray(0, firstLine === -1 ? Math.min(b.length, 16) : firstLine).toString('latin1');
  if (!/^[A-Z]{0,16}( |$)/.test(line0)) return bad('not an HTTP request');
  let end = b.indexOf('\r\n\r\n');
  let sepLen = 4;
  const lfEnd = b.indexOf('\n\n');
  if (lfEnd !== -1 && (end === -1 || lfEnd < end)) {
    end = lfEnd;
    sepLen = 2;
  }
  if (end === -1) {
    return b.length >= maxBytes
      ? { kind: 'refused', status: 431, reason: `request head larger than ${maxBytes} bytes` }
      : { kind: 'more' };
  }
  if (end + sepLen > maxBytes)
    return { kind: 'refused', status: 431, reason: `request head larger than ${maxBytes} bytes` };
  const lines = b.subarray(0, end).toString('latin1').split(/\r?\n/);
  const m = /^([A-Z]{1,16}) (\S+) HTTP\/1\.[01]$/.exec(lines[0]!);
  if (!m) return bad('a malformed request line (expected "METHOD target HTTP/1.1")');
  let host: string | undefined;
  let hosts = 0;
  for (const line of lines.slice(1)) {
    if (line === '' || line[0] === ' ' || line[0] === '\t') return bad('a folded or empty header line');
    const colon = line.indexOf(':');
    if (colon <= 0) return bad('a header line without "name:"');
    const name = line.slice(0, colon);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) return bad('a malformed header name');
    if (name.toLowerCase() === 'host') {
      hosts++;
      host = line.slice(colon + 1).trim();
    }
  }
  const target = m[2]!;
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute) host = absolute[1];
  else if (hosts !== 1) return bad(hosts === 0 ? 'no Host header' : 'more than one Host header');
  const name = stripPort(host ?? '');
  if (name === undefined) return bad('a malformed Host port');
  const problem = hostProblem(name);
  if (problem) return bad(`a Host that ${problem}`);
  return { kind: 'ok', host: name.toLowerCase().replace(/\.$/, ''), headBytes: end + sepLen };
}

function stripPort(host: string): string | undefined {
  const withoutDot = host.endsWith('.') ? host.slice(0, -1) : host;
  const m = /^([^:]*)(?::([0-9]{1,5}))?$/.exec(withoutDot);
  if (!m) return undefined;
  const h = m[1]!;
  return h.endsWith('.') ? h.slice(0, -1) : h;
}
