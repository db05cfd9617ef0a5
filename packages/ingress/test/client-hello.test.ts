import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hostProblem, MAX_CLIENT_HELLO_BYTES, readClientHello } from '../src/client-hello.ts';
import { captureClientHello, ext, frame, helloBody, reframe, sniExt } from './hello.ts';

const refusedFor = (bytes: Buffer, why: RegExp) => {
  const r = readClientHello(bytes);
  assert.equal(r.kind, 'refused', JSON.stringify(r));
  if (r.kind === 'refused') assert.match(r.reason, why);
};

describe('ClientHello reader', async () => {
  const tls13 = await captureClientHello({ servername: 'Shop.Example.com', alpn: ['h2', 'http/1.1'] });
  const tls12 = await captureClientHello({ servername: 'hello.dev.formation.local', maxVersion: 'TLSv1.2' });
  const noSni = await captureClientHello({}); // node:tls sends no SNI to an IP address

  test("node:tls's real ClientHellos (TLS 1.3 and 1.2): the server name (lower case) and ALPN", () => {
    assert.deepEqual(readClientHello(tls13), { kind: 'ok', serverName: 'shop.example.com', alpn: ['h2', 'http/1.1'] });
    assert.deepEqual(readClientHello(tls12), { kind: 'ok', serverName: 'hello.dev.formation.local', alpn: [] });
  });

  test('every proper prefix asks for more; the whole hello (and more bytes after it) is read', () => {
    for (let n = 0; n < tls13.length; n++)
      assert.deepEqual(readClientHello(tls13.subarray(0, n)), { kind: 'more' }, `${n}`);
    const more = Buffer.concat([tls13, Buffer.from('trailing application data')]);
    assert.equal(readClientHello(more).kind, 'ok');
  });

  test('a ClientHello split over several records is reassembled (also byte by byte)', () => {
    for (const size of [100, 512]) assert.equal(readClientHello(reframe(tls13, size)).kind, 'ok', `${size}`);
    // 1-byte records: a hello in hundreds of records is an attack on the reader, not a client.
    refusedFor(reframe(tls13, 1), /too many records/);
    const two = reframe(tls13, Math.ceil((tls13.length - 5) / 2));
    assert.equal(readClientHello(two).kind, 'ok');
    for (let n = 0; n < two.length; n++) assert.equal(readClientHello(two.subarray(0, n)).kind, 'more', `${n}`);
  });

  test('no SNI, garbage, SSLv2 and oversize are refused with a reason', () => {
    refusedFor(noSni, /no server name/);
    refusedFor(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), /not a TLS handshake record/);
    refusedFor(Buffer.from([0x80, 0x2e, 0x01, 0x00, 0x02]), /SSLv2/);
    refusedFor(Buffer.from([0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5]), /not a TLS handshake/);
    refusedFor(Buffer.from([0x16, 2, 0, 0, 5]), /record version/);
    refusedFor(Buffer.from([0x16, 3, 1, 0, 0]), /record length/);
    refusedFor(Buffer.from([0x16, 3, 1, 0x40, 0x01]), /record length/);
    refusedFor(Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0]), /not a ClientHello/);
    refusedFor(Buffer.from([0x16, 3, 1, 0, 4, 1, 0, 0x40, 0x01]), new RegExp(`larger than ${MAX_CLIENT_HELLO_BYTES}`));
    refusedFor(Buffer.from([0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), /larger than/);
    refusedFor(frame(helloBody(null)), /no extensions/);
    refusedFor(frame(helloBody([])), /no server name/);
    refusedFor(
      frame(helloBody([ext(0x10, Buffer.from([0, 3, 2, 104, 50])), ext(0x2b, Buffer.from([2, 3, 4]))])),
      /no server name/,
    );
  });

  test('malformed server names are refused: bad characters, IP literal, two names, lengths that lie', () => {
    assert.equal(readClientHello(frame(helloBody([sniExt('a.example')]))).kind, 'ok');
    refusedFor(frame(helloBody([sniExt('a.example\r\nX: y')])), /characters other than/);
    refusedFor(frame(helloBody([sniExt('a b.example')])), /characters other than/);
    refusedFor(frame(helloBody([sniExt('a.example.')])), /empty label/);
    refusedFor(frame(helloBody([sniExt('10.0.0.1')])), /IP address/);
    refusedFor(frame(helloBody([sniExt('')])), /is empty/);
    refusedFor(frame(helloBody([sniExt(`${'a'.repeat(64)}.example`)])), /longer than 63/);
    refusedFor(frame(helloBody([sniExt(Array(60).fill('abcd').join('.'))])), /longer than 253/);
    refusedFor(frame(helloBody([sniExt('a.example', 'b.example')])), /two host names/);
    refusedFor(frame(helloBody([sniExt('a.example'), sniExt('b.example')])), /given twice/);
    refusedFor(frame(helloBody([ext(0, Buffer.from([0, 9, 0, 0, 3, 97]))])), /malformed server name list/);
    refusedFor(frame(helloBody([ext(0, Buffer.from([0, 4, 0, 0, 9, 97]))])), /truncated server name/);
    refusedFor(frame(helloBody([ext(0, Buffer.from([0, 3, 1, 0, 0]))])), /no host_name/);
    // An extension whose length runs past the message.
    const body = helloBody([sniExt('a.example')]);
    body.writeUInt16BE(body.readUInt16BE(41) + 1, 41);
    refusedFor(frame(body), /extensions length/);
  });

  test('hostProblem (shared with the HTTP Host header)', () => {
    assert.equal(hostProblem('hello.dev.formation.local'), undefined);
    assert.equal(hostProblem('xn--bcher-kva.example'), undefined);
    for (const bad of ['', '.', 'a..b', '-a.b', 'a-.b', 'a_b.c', '1.2.3.4', 'a/b', 'é.example', 'a'.repeat(254)])
      assert.ok(hostProblem(bad), bad);
  });

  test('bounded: the largest hello it reads is refused past its limit, fast', () => {
    const big = frame(helloBody([sniExt('a.example'), ext(0x15, Buffer.alloc(MAX_CLIENT_HELLO_BYTES))]));
    refusedFor(big, /larger than/);
    const atLimit = frame(helloBody([sniExt('a.example'), ext(0x15, Buffer.alloc(MAX_CLIENT_HELLO_BYTES - 200))]));
    assert.equal(readClientHello(atLimit).kind, 'ok');
  });
});
