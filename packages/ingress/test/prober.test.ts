// The prober: driven by a manual clock and a scripted transport (unit), then the real transport against
// real sockets on loopback (the same expectations).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { type HealthcheckSpec, PROBE_SOURCE_PORTS } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { type Clock, createProber, netTransport, type ProbeTransport } from '../src/prober.ts';

/** A clock that moves only when told; timers fire in order, and the promises they start settle. */
function manualClock(): Clock & { advance(ms: number): Promise<void> } {
  let now = 0;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const flush = async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
  };
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
    async advance(ms) {
      const end = now + ms;
      await flush();
      for (;;) {
        const next = [...timers.entries()]
          .filter(([, t]) => t.at <= end)
          .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
        if (!next) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
        await flush();
      }
      now = end;
    },
  };
}

const spec = (over: Partial<HealthcheckSpec> = {}): HealthcheckSpec => ({
  test: { type: 'http', port: 8080, path: '/health' },
  intervalMs: 1000,
  timeoutMs: 500,
  retries: 2,
  startPeriodMs: 0,
  ...over,
});

describe('prober (manual clock, scripted transport)', () => {
  test('checks at once, then every interval; status follows the results; changes are reported', async () => {
    const clock = manualClock();
    let up = true;
    const calls: string[] = [];
    const transport: ProbeTransport = {
      http: async (address, port, path) => {
        calls.push(`${address}:${port}${path}`);
        return up ? { ok: true } : { ok: false, detail: 'status 503' };
      },
      tcp: async () => ({ ok: true }),
    };
    const changes: string[] = [];
    const prober = createProber({ clock, transport, onChange: (id, s, was) => changes.push(`${id} ${was}->${s}`) });
    prober.set([{ replicaId: 'r1', address: '10.129.1.2', startedAt: 0, spec: spec() }]);
    assert.equal(prober.status('r1'), 'starting');
    await clock.advance(0);
    assert.equal(prober.status('r1'), 'healthy');
    assert.deepEqual(calls, ['10.129.1.2:8080/health']);
    up = false;
    await clock.advance(1000);
    assert.equal(prober.status('r1'), 'healthy', 'one failure < retries');
    await clock.advance(1000);
    assert.equal(prober.status('r1'), 'unhealthy');
    assert.deepEqual(prober.report('r1')?.last.at(-1), { at: 2000, ok: false, detail: 'status 503' });
    up = true;
    await clock.advance(1000);
    assert.equal(prober.status('r1'), 'healthy');
    assert.equal(calls.length, 4, 'one check per interval');
    assert.deepEqual(changes, ['r1 starting->healthy', 'r1 healthy->unhealthy', 'r1 unhealthy->healthy']);
    prober.close();
    await clock.advance(10_000);
    assert.equal(calls.length, 4, 'no checks after close');
  });

  test('a check that hangs fails at its timeout; the start period hides early failures', async () => {
    const clock = manualClock();
    const transport: ProbeTransport = { http: () => new Promise(() => {}), tcp: () => new Promise(() => {}) };
    const prober = createProber({ clock, transport });
    prober.set([
      {
        replicaId: 'r',
        address: 'x',
        startedAt: 0,
        spec: spec({ test: { type: 'tcp', port: 1 }, startPeriodMs: 2500 }),
      },
    ]);
    await clock.advance(2600);
    assert.equal(prober.status('r'), 'starting', 'failures at 0, 1000, 2000 are in the start period');
    await clock.advance(2000);
    assert.equal(prober.status('r'), 'unhealthy');
    assert.equal(prober.report('r')?.last.at(-1)?.detail, 'timeout after 500 ms');
    prober.close();
  });

  test('set() reconciles: gone replicas stop, changed specs restart, CMD checks need a runner', async () => {
    const clock = manualClock();
    const calls: string[] = [];
    const transport: ProbeTransport = {
      http: async (a) => {
        calls.push(a);
        return { ok: true };
      },
      tcp: async (a) => {
        calls.push(`tcp ${a}`);
        return { ok: true };
      },
    };
    const prober = createProber({ clock, transport });
    const cmd = spec({ test: { type: 'cmd', command: { form: 'shell', command: 'true' } } });
    prober.set([
      { replicaId: 'a', address: 'A', startedAt: 0, spec: spec() },
      { replicaId: 'c', address: 'C', startedAt: 0, spec: cmd },
    ]);
    await clock.advance(0);
    assert.equal(prober.status('c'), undefined, 'not checked here without a runner');
    prober.set([{ replicaId: 'a', address: 'A', startedAt: 0, spec: spec({ test: { type: 'tcp', port: 1 } }) }]);
    await clock.advance(0);
    assert.deepEqual(calls, ['A', 'tcp A']);
    prober.set([]);
    await clock.advance(5000);
    assert.equal(prober.status('a'), undefined);
    assert.equal(calls.length, 2);
    const ran: string[] = [];
    const withRunner = createProber({
      clock,
      transport,
      runCommand: async (id, c) => {
        ran.push(`${id} ${c.form}`);
        return { ok: false, detail: 'exit 1' };
      },
    });
    withRunner.set([{ replicaId: 'c', address: 'C', startedAt: 0, spec: cmd }]);
    await clock.advance(1000);
    assert.deepEqual(ran, ['c shell', 'c shell']);
    assert.equal(withRunner.status('c'), 'unhealthy');
    withRunner.close();
  });
});

describe('netTransport (real sockets on loopback)', () => {
  test('HTTP: 2xx/3xx healthy, 5xx not, refused, hung and non-HTTP servers fail with a reason', async () => {
    let status = 200;
    let lastPath = '';
    const http = createHttpServer((req, res) => {
      lastPath = req.url ?? '';
      res.writeHead(status, { 'content-type': 'text/plain' }).end('x'.repeat(100_000));
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const hung = createServer((s) => s.resume()); // reads (so it sees the close) and never answers
    hung.listen(0, '127.0.0.1');
    await once(hung, 'listening');
    const junk = createServer((s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'));
    junk.listen(0, '127.0.0.1');
    await once(junk, 'listening');
    const port = (s: { address(): unknown }) => (s.address() as { port: number }).port;
    const t = netTransport();
    try {
      assert.deepEqual(await t.http('127.0.0.1', port(http), '/health?x=1', 2000), { ok: true });
      assert.equal(lastPath, '/health?x=1');
      status = 302;
      assert.deepEqual(await t.http('127.0.0.1', port(http), '/', 2000), { ok: true });
      status = 503;
      assert.deepEqual(await t.http('127.0.0.1', port(http), '/', 2000), { ok: false, detail: 'status 503' });
      assert.deepEqual(await t.http('127.0.0.1', port(junk), '/', 2000), { ok: false, detail: 'no HTTP status line' });
      assert.match((await t.http('127.0.0.1', port(hung), '/', 300)).detail ?? '', /timeout after 300 ms/);
      const closed = port(hung);
      await new Promise((r) => hung.close(r));
      assert.deepEqual(await t.http('127.0.0.1', closed, '/', 1000), { ok: false, detail: 'connect ECONNREFUSED' });
      assert.deepEqual(await t.tcp('127.0.0.1', closed, 1000), { ok: false, detail: 'connect ECONNREFUSED' });
      assert.deepEqual(await t.tcp('127.0.0.1', port(http), 1000), { ok: true });
      // A path that would break the request line is never written.
      assert.equal((await t.http('127.0.0.1', port(http), '/a\r\nHost: evil', 1000)).ok, false);
    } finally {
      http.close();
      junk.close();
      hung.close();
    }
  });

  test('every probe connection comes from a PROBE_SOURCE_PORTS port (how nodes tell probes from visits); a taken port tries another', async () => {
    const seen: number[] = [];
    const http = createHttpServer((req, res) => {
      seen.push(req.socket.remotePort ?? 0);
      res.end('ok');
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const tcpSeen: number[] = [];
    const raw = createServer((s) => {
      tcpSeen.push(s.remotePort ?? 0);
      s.destroy();
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    // A two-port range with one port held by a listener: every probe still binds the free one.
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const busy = (taken.address() as { port: number }).port;
    const port = (s: { address(): unknown }) => (s.address() as { port: number }).port;
    try {
      const t = netTransport();
      for (let i = 0; i < 3; i++) assert.deepEqual(await t.http('127.0.0.1', port(http), '/', 2000), { ok: true });
      assert.deepEqual(await t.tcp('127.0.0.1', port(raw), 2000), { ok: true });
      for (const p of [...seen, ...tcpSeen]) {
        assert.ok(p >= PROBE_SOURCE_PORTS.first && p <= PROBE_SOURCE_PORTS.last, `source port ${p} in the probe range`);
      }
      seen.length = 0;
      const narrow = netTransport({ sourcePorts: { first: busy, last: busy + 1 } });
      assert.deepEqual(await narrow.http('127.0.0.1', port(http), '/', 2000), { ok: true });
      assert.deepEqual(seen, [busy + 1]);
    } finally {
      http.close();
      raw.close();
      taken.close();
    }
  });

  test('the prober with the real transport and clock: healthy, then unhealthy when the server stops', async () => {
    const http = createHttpServer((_req, res) => res.end('ok'));
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    const port = (http.address() as { port: number }).port;
    const prober = createProber();
    prober.set([
      {
        replicaId: 'r',
        address: '127.0.0.1',
        startedAt: Date.now(),
        spec: spec({ test: { type: 'http', port, path: '/' }, intervalMs: 1000, timeoutMs: 500 }),
      },
    ]);
    try {
      await until('healthy', () => prober.status('r') === 'healthy', 5000);
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await until('unhealthy', () => prober.status('r') === 'unhealthy', 10_000);
      assert.equal(prober.report('r')?.last.at(-1)?.detail, 'connect ECONNREFUSED');
    } finally {
      prober.close();
    }
  });
});
