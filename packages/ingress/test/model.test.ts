// The pure parts: health model, route table, backend order, HTTP head reader.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type CheckResult, healthState, INITIAL_HEALTH, nextHealth } from '../src/health.ts';
import { readHttpHead } from '../src/http-head.ts';
import { type Backend, buildRouteTable, guestPorts, inFormnet, pickOrder, type RouteInput } from '../src/routes.ts';

describe('healthState (Docker rules: start period, retries)', () => {
  const spec = { retries: 3, startPeriodMs: 30_000 };
  const r = (at: number, ok: boolean): CheckResult => ({ at, ok });
  const cases: Array<[string, CheckResult[], 'starting' | 'healthy' | 'unhealthy']> = [
    ['no checks yet', [], 'starting'],
    [
      'failures inside the start period do not count',
      [r(0, false), r(10_000, false), r(20_000, false), r(29_999, false)],
      'starting',
    ],
    ['a pass in the start period: healthy at once', [r(0, false), r(5_000, true)], 'healthy'],
    [
      'after the start period, 2 failures (< retries): still starting',
      [r(30_000, false), r(40_000, false)],
      'starting',
    ],
    [
      'after the start period, retries failures: unhealthy',
      [r(30_000, false), r(40_000, false), r(50_000, false)],
      'unhealthy',
    ],
    [
      'healthy, then fewer failures than retries: still healthy',
      [r(1_000, true), r(2_000, false), r(3_000, false)],
      'healthy',
    ],
    [
      'healthy ends the start period: later failures count even inside it',
      [r(1_000, true), r(2_000, false), r(3_000, false), r(4_000, false)],
      'unhealthy',
    ],
    [
      'unhealthy, then one pass: healthy again',
      [r(30_000, false), r(31_000, false), r(32_000, false), r(33_000, true)],
      'healthy',
    ],
    [
      'a pass resets the count',
      [r(30_000, false), r(31_000, false), r(32_000, true), r(33_000, false), r(34_000, false)],
      'healthy',
    ],
    ['start-period failures then counted ones', [r(29_000, false), r(30_000, false), r(31_000, false)], 'starting'],
  ];
  for (const [what, results, want] of cases) {
    test(what, () => assert.equal(healthState({ startedAt: 0, results }, spec), want));
  }

  test('retries 1 and start period 0: one failure is unhealthy; startedAt shifts the period', () => {
    assert.equal(healthState({ startedAt: 0, results: [r(0, false)] }, { retries: 1, startPeriodMs: 0 }), 'unhealthy');
    assert.equal(
      healthState({ startedAt: 100_000, results: [r(120_000, false), r(121_000, false), r(122_000, false)] }, spec),
      'starting',
    );
  });

  test('folding with nextHealth is the same as healthState (any history)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat({ max: 100_000 }), ok: fc.boolean() }), { maxLength: 30 }),
        fc.integer({ min: 1, max: 5 }),
        fc.nat({ max: 60_000 }),
        (results, retries, startPeriodMs) => {
          const sorted = [...results].sort((a, b) => a.at - b.at);
          let s = INITIAL_HEALTH;
          for (const x of sorted) s = nextHealth(s, x, { retries, startPeriodMs }, 0);
          assert.equal(s.status, healthState({ startedAt: 0, results: sorted }, { retries, startPeriodMs }));
          // Never unhealthy without `retries` failures in a row at the end.
          if (s.status === 'unhealthy') assert.ok(sorted.slice(-retries).every((x) => !x.ok));
        },
      ),
    );
  });
});

const STATUS: Record<string, 'healthy' | 'unhealthy' | 'starting'> = { r1: 'healthy', r2: 'unhealthy', r3: 'starting' };

describe('route table', () => {
  const replica = (id: string, address: string | null, running = true) => ({ id, address, running });
  const input = (over: Partial<RouteInput> = {}): RouteInput => ({
    instances: [
      {
        id: 'i-hello',
        hosts: ['hello.dev.formation.local', 'Hello.0xabc.dev.formation.local.'],
        expose: [8080],
        healthchecked: true,
        replicas: [replica('r1', '10.129.1.2'), replica('r2', '10.129.2.2'), replica('r3', '10.129.3.2')],
      },
      {
        id: 'i-shop',
        hosts: ['shop.example.com'],
        expose: [443, 80],
        healthchecked: false,
        replicas: [replica('s1', '10.129.1.3'), replica('s2', null), replica('s3', '10.129.2.3', false)],
      },
    ],
    health: (id) => STATUS[id],
    ...over,
  });

  test('host → healthy running replicas with their guest ports; names normalized', () => {
    const t = buildRouteTable(input());
    assert.deepEqual([...t.keys()].sort(), [
      'hello.0xabc.dev.formation.local',
      'hello.dev.formation.local',
      'shop.example.com',
    ]);
    assert.deepEqual(t.get('hello.dev.formation.local'), {
      instance: 'i-hello',
      backends: [{ id: 'r1', address: '10.129.1.2', httpPort: 8080, tlsPort: null }],
    });
    // No health check: every running replica with an address; stopped or address-less ones are out.
    assert.deepEqual(t.get('shop.example.com')?.backends, [
      { id: 's1', address: '10.129.1.3', httpPort: 80, tlsPort: 443 },
    ]);
  });

  test('a replica the prober does not check (e.g. a CMD check the node cannot run) counts as without one', () => {
    const t = buildRouteTable(input({ health: () => undefined }));
    assert.deepEqual(
      t.get('hello.dev.formation.local')?.backends.map((b) => b.id),
      ['r1', 'r2', 'r3'],
    );
  });

  test('unhealthy → taken out; healthy again → back', () => {
    let h: Record<string, 'healthy' | 'unhealthy'> = { r1: 'healthy', r2: 'healthy', r3: 'healthy' };
    const ids = () =>
      buildRouteTable(input({ health: (id) => h[id] }))
        .get('hello.dev.formation.local')
        ?.backends.map((b) => b.id);
    assert.deepEqual(ids(), ['r1', 'r2', 'r3']);
    h = { ...h, r2: 'unhealthy' };
    assert.deepEqual(ids(), ['r1', 'r3']);
    h = { ...h, r2: 'healthy' };
    assert.deepEqual(ids(), ['r1', 'r2', 'r3']);
  });

  test('a host two instances claim is routed to neither', () => {
    const base = input();
    const t = buildRouteTable({
      ...base,
      instances: [...base.instances, { ...base.instances[1]!, id: 'i-squatter', hosts: ['SHOP.example.com'] }],
    });
    assert.equal(t.get('shop.example.com'), undefined);
    assert.ok(t.get('hello.dev.formation.local'));
  });

  test('a replica address outside formnet (a lying node pointing at 127.0.0.1, its Redis, a LAN) is never routed', () => {
    const base = input();
    const liar = {
      ...base.instances[1]!,
      replicas: [
        '127.0.0.1',
        '0.0.0.0',
        '192.168.1.10',
        '10.127.255.1',
        '169.254.169.254',
        '::1',
        '010.128.0.1',
        '10.128.0.1',
      ].map((address, i) => ({ id: `x${i}`, address, running: true })),
    };
    const t = buildRouteTable({ ...base, instances: [liar] });
    assert.deepEqual(
      t.get('shop.example.com')?.backends.map((b) => b.address),
      ['10.128.0.1'],
    );
    assert.ok(inFormnet('10.255.255.255') && inFormnet('10.128.0.0'));
    assert.ok(!inFormnet('10.128.0.256') && !inFormnet('10.128.0') && !inFormnet('11.128.0.1'));
  });

  test('guestPorts: 80 else the lowest non-443 port for HTTP; 443 only for TLS', () => {
    assert.deepEqual(guestPorts([]), { http: null, tls: null });
    assert.deepEqual(guestPorts([8080]), { http: 8080, tls: null });
    assert.deepEqual(guestPorts([9000, 8080, 80]), { http: 80, tls: null });
    assert.deepEqual(guestPorts([443]), { http: null, tls: 443 });
    assert.deepEqual(guestPorts([443, 3000]), { http: 3000, tls: 443 });
  });
});

describe('pickOrder', () => {
  const b = (id: string): Backend => ({ id, address: id, httpPort: 80, tlsPort: null });
  const all = [b('a'), b('b'), b('c')];
  const ids = (x: Backend[]) => x.map((y) => y.id).join('');

  test('round robin when idle', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((t) => ids(pickOrder(all, new Map(), t))),
      ['abc', 'bca', 'cab', 'abc'],
    );
  });
  test('least connections first, then round robin among equals', () => {
    const active = new Map([
      ['a', 2],
      ['b', 0],
      ['c', 1],
    ]);
    assert.equal(ids(pickOrder(all, active, 0)), 'bca');
    assert.equal(ids(pickOrder(all, new Map([['a', 1]]), 0)), 'bca');
    assert.equal(ids(pickOrder(all, new Map([['a', 1]]), 2)), 'cba');
  });
  test('recently failed backends last, but still tried', () => {
    assert.equal(ids(pickOrder(all, new Map(), 0, new Set(['a']))), 'bca');
    assert.equal(ids(pickOrder(all, new Map(), 0, new Set(['a', 'b', 'c']))), 'abc');
    assert.deepEqual(pickOrder([], new Map(), 5), []);
  });
  test('spread: over many turns each backend is first equally often', () => {
    const firsts = new Map<string, number>();
    for (let t = 0; t < 300; t++) {
      const f = pickOrder(all, new Map(), t)[0]!.id;
      firsts.set(f, (firsts.get(f) ?? 0) + 1);
    }
    assert.deepEqual([...firsts.values()], [100, 100, 100]);
  });
});

describe('readHttpHead', () => {
  const head = (s: string, max = 16_384) => readHttpHead(Buffer.from(s, 'latin1'), max);
  test('the Host (lower case, port and trailing dot dropped) and where the head ends', () => {
    const req = 'GET / HTTP/1.1\r\nHost: Shop.Example.com:80\r\nAccept: */*\r\n\r\nbody';
    assert.deepEqual(head(req), { kind: 'ok', host: 'shop.example.com', headBytes: req.indexOf('body') });
    assert.equal((head('GET / HTTP/1.0\nhost: a.example.\n\n') as { host: string }).host, 'a.example');
    // The absolute-form target wins over Host (RFC 9112 3.2.2).
    assert.equal(
      (head('GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n') as { host: string }).host,
      'b.example',
    );
  });
  test('incomplete heads ask for more; a non-HTTP client is refused at once', () => {
    assert.deepEqual(head('GET / HTTP/1.1\r\nHost: a.example\r\n'), { kind: 'more' });
    assert.deepEqual(head('GE'), { kind: 'more' });
    assert.equal(head('\x16\x03\x01\x02\x00').kind, 'refused');
  });
  const refusals: Array<[string, number, RegExp]> = [
    ['GET / HTTP/1.1\r\n\r\n', 400, /no Host/],
    ['GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', 400, /more than one Host/],
    ['GET / HTTP/1.1\r\nHost : a.example\r\n\r\n', 400, /malformed header name/],
    ['GET / HTTP/1.1\r\nX: 1\r\n  folded\r\nHost: a.example\r\n\r\n', 400, /folded/],
    ['GET / HTTP/2\r\nHost: a.example\r\n\r\n', 400, /request line/],
    ['GET /\r\nHost: a.example\r\n\r\n', 400, /request line/],
    ['GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n', 400, /IP address/],
    ['GET / HTTP/1.1\r\nHost: a_b.example\r\n\r\n', 400, /characters other than/],
    ['GET / HTTP/1.1\r\nHost: a.example:http\r\n\r\n', 400, /Host port/],
    ['GET / HTTP/1.1\r\nHost:\r\n\r\n', 400, /empty/],
    [`GET /${'a'.repeat(100)} HTTP/1.1\r\nHost: a.example\r\n\r\n`, 431, /larger than 64/],
    [`GET /${'a'.repeat(100)}`, 431, /larger than 64/],
  ];
  for (const [req, status, why] of refusals) {
    test(`refuses ${JSON.stringify(req.slice(0, 50))} with ${status}`, () => {
      const r = head(req, 64);
      assert.equal(r.kind, 'refused');
      if (r.kind === 'refused') {
        assert.equal(r.status, status);
        assert.match(r.reason, why);
      }
    });
  }
  test('fuzz: never throws; an "ok" host is clean', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc
            .tuple(
              fc.constantFrom('GET / HTTP/1.1\r\n', 'POST http://x/ HTTP/1.0\n', ''),
              fc.string({ maxLength: 80 }),
              fc.constantFrom('\r\n\r\n', '\n\n', ''),
            )
            .map(([a, b, c]) => `${a}Host: ${b}${c}`),
        ),
        (s) => {
          const r = head(s, 128);
          if (r.kind === 'ok') assert.match(r.host, /^[a-z0-9.-]+$/);
        },
      ),
      { interruptAfterTimeLimit: 1000, numRuns: 100_000 },
    );
  });
});
