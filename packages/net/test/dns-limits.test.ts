// Abuse limits of the public DNS (issue 19): the pure rate limiter by table, then a responder with
// `public` limits on loopback: ANY refused, answers capped at 512 bytes, reflection ports ignored,
// past the limit 1 in `slip` answers truncated (TC=1) and the rest dropped, TCP answering what UDP
// truncated, TCP connection limits.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import {
  createDnsResponder,
  createResponseRateLimiter,
  DEFAULT_PUBLIC_DNS_TCP,
  DEFAULT_RESPONSE_RATE_LIMITS,
  type DnsResponder,
  MAX_DNS_ANSWER_BYTES,
  reflectionPort,
  sourceNetwork,
} from '../src/index.ts';

describe('sourceNetwork', () => {
  const cases: Array<[string, string]> = [
    ['198.51.100.7', '198.51.100.0/24'],
    ['198.51.100.250', '198.51.100.0/24'],
    ['::ffff:198.51.100.9', '198.51.100.0/24'],
    ['203.0.113.1', '203.0.113.0/24'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:0:0:0:0:0/56'],
    ['2001:db8:1:ff::1', '2001:db8:1:0:0:0:0:0/56'],
    ['2001:db8:1:100::1', '2001:db8:1:100:0:0:0:0/56'],
  ];
  for (const [src, want] of cases) test(`${src} → ${want}`, () => assert.equal(sourceNetwork(src), want));
});

describe('response rate limiter (table)', () => {
  const L = { ...DEFAULT_RESPONSE_RATE_LIMITS, perSourcePerSecond: 2, perSourceBurst: 3, globalPerSecond: 0 };
  const run = (limits: typeof L, steps: Array<[string, number]>) => {
    const rrl = createResponseRateLimiter(limits);
    return steps.map(([src, t]) => rrl.decide(src, t));
  };
  test('a burst is answered, then 1 in slip is truncated and the rest dropped', () => {
    const steps = Array.from({ length: 9 }, () => ['198.51.100.7', 0] as [string, number]);
    assert.deepEqual(run(L, steps), ['answer', 'answer', 'answer', 'drop', 'slip', 'drop', 'slip', 'drop', 'slip']);
  });
  test('slip 0 drops everything past the limit (no TCP to retry on)', () => {
    const steps = Array.from({ length: 6 }, () => ['198.51.100.7', 0] as [string, number]);
    assert.deepEqual(run({ ...L, slip: 0 }, steps), ['answer', 'answer', 'answer', 'drop', 'drop', 'drop']);
  });
  test('tokens come back at the rate: 2/s means one every 500 ms', () => {
    const src = '198.51.100.7';
    const steps: Array<[string, number]> = [
      [src, 0],
      [src, 0],
      [src, 0],
      [src, 0],
      [src, 499],
      [src, 500],
      [src, 501],
      [src, 10_000],
    ];
    assert.deepEqual(run(L, steps), ['answer', 'answer', 'answer', 'drop', 'slip', 'answer', 'drop', 'answer']);
  });
  test('addresses of one /24 share a bucket (a spoofer cannot rotate inside the victim network)', () => {
    const steps: Array<[string, number]> = ['1', '2', '3', '4', '5'].map((h) => [`198.51.100.${h}`, 0]);
    assert.deepEqual(run(L, steps), ['answer', 'answer', 'answer', 'drop', 'slip']);
  });
  test('another network has its own bucket', () => {
    const steps: Array<[string, number]> = [
      ['198.51.100.1', 0],
      ['198.51.100.1', 0],
      ['198.51.100.1', 0],
      ['198.51.100.1', 0],
      ['203.0.113.1', 0],
    ];
    assert.deepEqual(run(L, steps), ['answer', 'answer', 'answer', 'drop', 'answer']);
  });
  test('the global bucket caps the sum over sources (spoofed from many networks)', () => {
    const steps: Array<[string, number]> = Array.from({ length: 6 }, (_, i) => [`203.0.${i}.1`, 0]);
    assert.deepEqual(run({ ...L, globalPerSecond: 4 }, steps), [
      'answer',
      'answer',
      'answer',
      'answer',
      'drop',
      'drop',
    ]);
  });
  test('the table is bounded: the least recently seen network is forgotten', () => {
    const rrl = createResponseRateLimiter({ ...L, maxSources: 3 });
    for (let i = 0; i < 10; i++) rrl.decide(`203.0.${i}.1`, 0);
    assert.equal(rrl.tracked(), 3);
  });
  test('reflection ports', () => {
    assert.deepEqual([0, 7, 19, 123, 53, 1024, 40000].map(reflectionPort), [
      true,
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
  });
});

describe('a responder with public limits', () => {
  let dns: DnsResponder;
  const many = Array.from({ length: 8 }, (_, i) => `198.51.100.${11 + i}`);
  before(async () => {
    dns = await createDnsResponder({
      records: (n) => (n === 'hello' ? ['198.51.100.11'] : n.startsWith('long') ? many : undefined),
      domain: 'fdi.test',
      port: 0,
      public: {
        rate: { ...DEFAULT_RESPONSE_RATE_LIMITS, perSourcePerSecond: 0.001, perSourceBurst: 5, globalPerSecond: 0 },
        ...DEFAULT_PUBLIC_DNS_TCP,
        tcpPerSource: 2,
      },
      logger: createLogger('silent'),
    });
  });
  after(async () => dns?.close());

  const query = (name: string, type: string, id = 7) =>
    dnsPacket.encode({
      type: 'query',
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type, name } as dnsPacket.Question],
    });

  /** Send `n` queries from one socket; collect what comes back within `waitMs` after the last. */
  async function udp(
    n: number,
    name = 'hello.fdi.test',
    type = 'A',
  ): Promise<Array<dnsPacket.DecodedPacket & { rcode?: string }>> {
    const s = createSocket('udp4');
    const got: Array<dnsPacket.DecodedPacket & { rcode?: string }> = [];
    s.on('message', (m) => got.push(dnsPacket.decode(m) as dnsPacket.DecodedPacket & { rcode?: string }));
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    for (let i = 0; i < n; i++) s.send(query(name, type, i), dns.address().port, '127.0.0.1');
    // Wait until the responder has decided on every query (its counters say so), then a beat for delivery.
    const before = dns.stats();
    const seen = () => {
      const st = dns.stats();
      return st.answered + st.slipped + st.dropped;
    };
    const start = before.answered + before.slipped + before.dropped;
    for (let i = 0; i < 200 && seen() < start + n; i++) await new Promise((r) => setTimeout(r, 10));
    for (
      let i = 0;
      i < 50 && got.length < dns.stats().answered + dns.stats().slipped - (before.answered + before.slipped);
      i++
    )
      await new Promise((r) => setTimeout(r, 10));
    s.close();
    return got;
  }

  function tcpAsk(name: string): Promise<dnsPacket.DecodedPacket & { rcode?: string }> {
    return new Promise((resolve, reject) => {
      const c = connect({ port: dns.address().port, host: '127.0.0.1' });
      let buf = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          c.end();
          resolve(dnsPacket.decode(buf.subarray(2)) as dnsPacket.DecodedPacket & { rcode?: string });
        }
      });
      c.on('error', reject);
      c.on('close', () => reject(new Error('closed without an answer')));
      c.on('connect', () => {
        const q = query(name, 'A');
        const head = Buffer.alloc(2);
        head.writeUInt16BE(q.length);
        c.write(Buffer.concat([head, q]));
      });
    });
  }

  test('ANY is refused, and recursion is never offered', async () => {
    const [r] = await udp(1, 'hello.fdi.test', 'ANY');
    assert.equal(r?.rcode, 'REFUSED');
    assert.deepEqual(r?.answers ?? [], []);
    assert.equal(r?.flag_ra, false);
    const [o] = await udp(1, 'example.com', 'A');
    assert.equal(o?.rcode, 'REFUSED'); // another zone: no recursion
    assert.equal(o?.flag_ra, false);
  });

  test('past the burst: 1 in 2 answers is truncated (TC=1, no records), the rest dropped; TCP still answers', async () => {
    const got = await udp(20);
    const st = dns.stats();
    const whole = got.filter((r) => !r.flag_tc);
    const tc = got.filter((r) => r.flag_tc);
    // 5 tokens, 2 already spent by the test above: 3 whole, then 17 refused → 8 slipped, 9 dropped.
    assert.equal(whole.length, 3);
    assert.equal(tc.length, 8);
    for (const r of tc) assert.deepEqual(r.answers ?? [], []);
    assert.ok(st.dropped >= 9);
    const viaTcp = await tcpAsk('hello.fdi.test');
    assert.equal(viaTcp.rcode, 'NOERROR');
    assert.deepEqual(
      (viaTcp.answers ?? []).map((a) => (a as { data: string }).data),
      ['198.51.100.11'],
    );
  });

  test('answers stay within 512 bytes whatever the question (TCP too)', async () => {
    const longName = `long${'a'.repeat(59)}.${'b'.repeat(63)}.${'c'.repeat(63)}.fdi.test`;
    const r = await tcpAsk(longName);
    assert.ok(dnsPacket.encodingLength(r as dnsPacket.Packet) <= MAX_DNS_ANSWER_BYTES);
    assert.ok((r.answers ?? []).length < 8, 'records were cut to fit');
    assert.equal(r.flag_tc, true);
  });

  test('TCP: at most tcpPerSource connections from one address', async () => {
    const port = dns.address().port;
    const open = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<ReturnType<typeof connect>>((resolve) => {
            const c = connect({ port, host: '127.0.0.1' }, () => resolve(c));
          }),
      ),
    );
    const refusedBefore = dns.stats().tcpRefused;
    const third = connect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve) => third.on('close', () => resolve()));
    assert.equal(dns.stats().tcpRefused, refusedBefore + 1);
    for (const c of open) c.destroy();
  });
});

describe('DNS over TCP on a real socket: a client cannot keep one connection', () => {
  let dns: DnsResponder;
  before(async () => {
    dns = await createDnsResponder({
      records: (n) => (n === 'hello' ? ['198.51.100.11'] : undefined),
      domain: 'fdj.test',
      port: 0,
      public: {
        rate: { ...DEFAULT_RESPONSE_RATE_LIMITS, globalPerSecond: 0 },
        ...DEFAULT_PUBLIC_DNS_TCP,
        tcpQueriesPerConnection: 3,
      },
      logger: createLogger('silent'),
    });
  });
  after(async () => dns?.close());

  const framed = (name: string, id: number) => {
    const q = dnsPacket.encode({ type: 'query', id, questions: [{ type: 'A', name }] });
    const head = Buffer.alloc(2);
    head.writeUInt16BE(q.length);
    return Buffer.concat([head, q]);
  };

  test('a connection is closed after tcpQueriesPerConnection answers, the last one delivered', async () => {
    const closedBefore = dns.stats().tcpClosed;
    const c = connect({ port: dns.address().port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const ids: number[] = [];
    let asked = 0;
    const ask = () => c.write(framed('hello.fdj.test', ++asked));
    const ended = new Promise<void>((resolve) => c.on('end', () => resolve()));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        ids.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))).id ?? -1);
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        if (!c.writableEnded) ask(); // one question after each answer, as a looping client would
      }
    });
    c.on('error', () => {});
    c.on('connect', ask);
    await ended;
    c.destroy();
    assert.deepEqual(ids, [1, 2, 3]);
    assert.equal(dns.stats().tcpClosed, closedBefore + 1);
  });
});
