// Test helpers: real ClientHellos captured from node:tls, and synthetic ones built field by field.
import { once } from 'node:events';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/** The first bytes node:tls sends for these options (its real ClientHello), captured on loopback. */
export async function captureClientHello(opts: {
  servername?: string;
  alpn?: string[];
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf);
          s.destroy();
        }
      });
    });
  });
  const client = tlsConnect({
    host: '127.0.0.1',
    port,
    ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
    ...(opts.alpn ? { ALPNProtocols: opts.alpn } : {}),
    ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
    rejectUnauthorized: false,
  });
  client.on('error', () => {});
  const bytes = await got;
  client.destroy();
  server.close();
  return bytes;
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);

export function ext(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

export function sniExt(...names: Array<string | Buffer>): Buffer {
  const entries = names.map((n) => {
    const b = typeof n === 'string' ? Buffer.from(n, 'latin1') : n;
    return Buffer.concat([Buffer.from([0]), u16(b.length), b]);
  });
  const list = Buffer.concat(entries);
  return ext(0, Buffer.concat([u16(list.length), list]));
}

/** A ClientHello handshake message body with these extensions (or none at all when `extensions` is null). */
export function helloBody(extensions: Buffer[] | null): Buffer {
  const fixed = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7),
    Buffer.from([0]), // session id
    u16(2),
    Buffer.from([0x13, 0x01]),
    Buffer.from([1, 0]), // compression: null
  ]);
  if (extensions === null) return fixed;
  const exts = Buffer.concat(extensions);
  return Buffer.concat([fixed, u16(exts.length), exts]);
}

/** Frame a ClientHello body as a handshake message in records of at most `recordSize` bytes. */
export function frame(body: Buffer, recordSize = 16_384, type = 1): Buffer {
  const msg = Buffer.concat([Buffer.from([type]), u24(body.length), body]);
  const out: Buffer[] = [];
  for (let i = 0; i < msg.length; i += recordSize) {
    const part = msg.subarray(i, i + recordSize);
    out.push(Buffer.from([0x16, 3, 1]), u16(part.length), part);
  }
  return Buffer.concat(out);
}

/** Re-frame a captured ClientHello (one record) into records of `recordSize`. */
export function reframe(hello: Buffer, recordSize: number): Buffer {
  const msg = hello.subarray(5, 5 + hello.readUInt16BE(3));
  return frame(msg.subarray(4), recordSize, msg[0]);
}
