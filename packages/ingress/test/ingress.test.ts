// The ingress against real servers on loopback: HTTP backends on 127.0.0.2/127.0.0.3 (same port, as the
// replicas of one instance have), a TLS backend with its own self-signed certificate, the real prober.
// No root needed; every server is on an ephemeral port this test opens and closes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request, type Server } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createServer as createTlsServer, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { FormError, type HealthcheckSpec } from '@formation/interface';
import { requireOrSkip, until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import {
  buildRouteTable,
  createProber,
  type Ingress,
  type Prober,
  type Route,
  type RouteTable,
  startIngress,
} from '../src/index.ts';

const skip = requireOrSkip('ingress loopback test', { programs: ['openssl'] });
const MARKER = 'visitor-secret-7f3a9c';

async function listen(server: Server | ReturnType<typeof createTlsServer>, host: string, port = 0): Promise<number> {
  server.listen(port, host);
  await once(server, 'listening');
  return (server.address() as { port: number }).port;
}

/** A plain HTTP backend that answers with its name and the Host it saw. */
function httpBackend(name: string): Server {
  return createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`${name} host=${req.headers.host}`));
  });
}

/** GET through the ingress with a new connection; resolves to the status and body. */
function get(port: number, host: string, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Send raw bytes and collect what comes back until the ingress closes. */
function raw(port: number, bytes: string | Buffer, opts: { keepOpen?: boolean } = {}): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (c) => {
      got += c.toString('latin1');
    });
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
    if (bytes.length) s.write(bytes);
    if (!opts.keepOpen) s.end();
  });
}

describe('ingress on loopback', { skip }, () => {
  let dir: string;
  let cert: string;
  let key: string;
  const a = httpBackend('A');
  const b = httpBackend('B');
  let httpPort: number;
  let tls: ReturnType<typeof createTlsServer>;
  let tlsPort: number;
  let prober: Prober;
  let ingress: Ingress;
  let logFd: number;
  let logPath: string;
  let routes: () => RouteTable = () => new Map();
  const extra = new Map<string, Route>();
  const tlsRoute = (): Route => ({
    instance: 'i-secure',
    backends: [{ id: 't1', address: '127.0.0.4', httpPort: null, tlsPort }],
  });
  const spec: HealthcheckSpec = {
    test: { type: 'http', port: 0, path: '/health' },
    intervalMs: 1000,
    timeoutMs: 1000,
    retries: 1,
    startPeriodMs: 0,
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fdg-ingress-'));
    key = join(dir, 'key.pem');
    cert = join(dir, 'cert.pem');
    const subject = ['-subj', '/CN=secure.example.test', '-addext', 'subjectAltName=DNS:secure.example.test'];
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', key, '-out', cert, '-days', '1', ...subject], {
      stdio: 'ignore',
    });
    httpPort = await listen(a, '127.0.0.2');
    await listen(b, '127.0.0.3', httpPort);
    tls = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (s) => {
      s.once('data', (d) =>
        s.end(
          `tls backend got ${d.toString().split('\r\n')[0]} with ${d.toString().includes(MARKER) ? 'the marker' : 'no marker'}`,
        ),
      );
    });
    tlsPort = await listen(tls, '127.0.0.4');
    prober = createProber();
    const hs = { ...spec, test: { ...spec.test, port: httpPort } } as HealthcheckSpec;
    prober.set([
      { replicaId: 'rA', address: '127.0.0.2', startedAt: Date.now(), spec: hs },
      { replicaId: 'rB', address: '127.0.0.3', startedAt: Date.now(), spec: hs },
    ]);
    // What the daemon will do: the table from state-like input and the prober's health, per call.
    routes = () => {
      const t = new Map(
        buildRouteTable({
          instances: [
            {
              id: 'i-hello',
              hosts: ['hello.dev.test'],
              expose: [httpPort],
              healthchecked: true,
              replicas: [
                { id: 'rA', address: '127.0.0.2', running: true },
                { id: 'rB', address: '127.0.0.3', running: true },
              ],
            },
          ],
          health: (id) => prober.status(id),
          addressAllowed: (ip) => ip.startsWith('127.0.0.'), // loopback stands in for formnet here
        }),
      );
      t.set('secure.example.test', tlsRoute());
      for (const [h, r] of extra) t.set(h, r);
      return t;
    };
    logPath = join(dir, 'ingress.log');
    logFd = openSync(logPath, 'w');
    ingress = await startIngress({
      listen: { http: { host: '127.0.0.1', port: 0 }, tls: { host: '127.0.0.1', port: 0 } },
      routes: () => routes(),
      logger: createLogger('trace', logFd),
      limits: { handshakeTimeoutMs: 500, maxConnectionsPerSource: 20, connectTimeoutMs: 1000 },
    });
    await until('both replicas healthy', () => prober.status('rA') === 'healthy' && prober.status('rB') === 'healthy');
  });

  after(async () => {
    await ingress?.close();
    prober?.close();
    for (const s of [a, b, tls]) {
      (s as Server).closeAllConnections?.();
      s.close();
    }
    if (logFd) closeSync(logFd);
    rmSync(dir, { recursive: true, force: true });
  });

  test('HTTP by Host reaches the instance; the Host header arrives unchanged; load spreads over both replicas', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await get(ingress.http!.port, 'Hello.Dev.Test');
      assert.equal(r.status, 200);
      assert.match(r.body, /^[AB] host=Hello\.Dev\.Test$/);
      seen.add(r.body[0]!);
    }
    assert.deepEqual([...seen].sort(), ['A', 'B']);
  });

  test('HTTP refusals: unknown host 404, no Host 400, oversize head 431, slow visitor 408, TLS bytes 400', async () => {
    const unknown = await get(ingress.http!.port, 'nobody.dev.test');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body, 'No instance is served at nobody.dev.test here.\n');
    assert.match(
      await raw(ingress.http!.port, 'GET / HTTP/1.1\r\n\r\n'),
      /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*no Host header/,
    );
    const big = `GET / HTTP/1.1\r\nHost: hello.dev.test\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`;
    assert.match(await raw(ingress.http!.port, big), /^HTTP\/1\.1 431 /);
    assert.match(await raw(ingress.http!.port, 'GET / HTTP/1.1\r\nHost: hel', { keepOpen: true }), /^HTTP\/1\.1 408 /);
    assert.match(await raw(ingress.http!.port, Buffer.from([0x16, 3, 1, 0, 5])), /^HTTP\/1\.1 400 /);
  });

  test('TLS passthrough: the visitor verifies the BACKEND certificate by SNI; the ingress logs no plaintext', async () => {
    const ca = readFileSync(cert);
    const fingerprint = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256'])
      .toString()
      .trim()
      .split('=')[1];
    const s = tlsConnect({ host: '127.0.0.1', port: ingress.tls!.port, servername: 'secure.example.test', ca });
    await once(s, 'secureConnect');
    assert.equal(s.authorized, true, 'verified against the backend certificate only');
    assert.equal(
      s.getPeerCertificate().fingerprint256,
      fingerprint,
      "the certificate is the backend's: TLS was not ended at the ingress",
    );
    s.write(`POST /pay HTTP/1.1\r\nHost: secure.example.test\r\n\r\n${MARKER}`);
    let reply = '';
    s.on('data', (d) => {
      reply += d;
    });
    await once(s, 'end');
    s.destroy();
    assert.equal(reply, 'tls backend got POST /pay HTTP/1.1 with the marker');
    const log = readFileSync(logPath, 'utf8');
    assert.ok(log.includes('"host":"secure.example.test"'), 'the SNI is metadata the node sees');
    assert.ok(!log.includes(MARKER) && !log.includes('/pay'), 'nothing of the encrypted request is in the log');
  });

  test('TLS refusals are clean closes with no bytes: unknown SNI, no SNI, garbage, a slow hello', async () => {
    const closedWith = async (opts: { servername?: string }) => {
      const s: TLSSocket = tlsConnect({
        host: '127.0.0.1',
        port: ingress.tls!.port,
        rejectUnauthorized: false,
        ...opts,
      });
      const err = await new Promise<Error | undefined>((resolve) => {
        s.once('secureConnect', () => resolve(undefined));
        s.once('error', resolve);
        s.once('close', () => resolve(new Error('closed')));
      });
      s.destroy();
      return err;
    };
    assert.match(
      String(await closedWith({ servername: 'nobody.example.test' })),
      /ECONNRESET|socket disconnected|closed/,
    );
    assert.ok(await closedWith({}), 'no SNI');
    assert.equal(await raw(ingress.tls!.port, 'GET / HTTP/1.1\r\nHost: secure.example.test\r\n\r\n'), '');
    assert.equal(
      await raw(ingress.tls!.port, Buffer.from([0x16, 3, 1, 0x40, 0x01]), { keepOpen: true }),
      '',
      'oversize record',
    );
    assert.equal(await raw(ingress.tls!.port, Buffer.from([0x16, 3, 1]), { keepOpen: true }), '', 'timeout');
    const st = ingress.stats();
    assert.ok(
      (st.refused['bad-client-hello'] ?? 0) >= 3 && (st.refused['handshake-timeout'] ?? 0) >= 1,
      JSON.stringify(st),
    );
  });

  test('a replica that refuses connections is skipped: the request is retried on another (nothing was sent yet)', async () => {
    const dead = createHttpServer();
    const deadPort = await listen(dead, '127.0.0.5');
    await new Promise((r) => dead.close(r)); // a closed port: ECONNREFUSED
    const before = ingress.stats().connectFailures;
    const route: Route = {
      instance: 'i-retry',
      backends: [
        { id: 'dead', address: '127.0.0.5', httpPort: deadPort, tlsPort: null },
        { id: 'rA', address: '127.0.0.2', httpPort, tlsPort: null },
      ],
    };
    extra.set('retry.dev.test', route);
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await get(ingress.http!.port, 'retry.dev.test'));
    assert.deepEqual(
      results.map((r) => r.status),
      [200, 200, 200, 200],
    );
    assert.ok(ingress.stats().connectFailures > before, 'the dead replica was tried');
    // Only dead replicas: 502, said plainly.
    extra.set('retry.dev.test', { ...route, backends: [route.backends[0]!] });
    const r = await get(ingress.http!.port, 'retry.dev.test');
    assert.equal(r.status, 502);
    assert.equal(r.body, 'No replica of retry.dev.test could be reached.\n');
    extra.delete('retry.dev.test');
  });

  test('a route table that throws answers 503 for that request; the ingress keeps serving', async () => {
    const saved = routes;
    routes = () => {
      throw new Error('state view unavailable');
    };
    try {
      const r = await get(ingress.http!.port, 'hello.dev.test');
      assert.deepEqual(r, { status: 503, body: 'hello.dev.test cannot be routed right now.\n' });
    } finally {
      routes = saved;
    }
    assert.equal((await get(ingress.http!.port, 'hello.dev.test')).status, 200);
  });

  test('too many connections from one address: 429 past the limit', async () => {
    const idle: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const s = netConnect({ host: '127.0.0.1', port: ingress.http!.port });
      await once(s, 'connect');
      idle.push(s);
    }
    try {
      await until('20 open at the ingress', () => ingress.stats().open >= 20);
      assert.match(await raw(ingress.http!.port, 'GET / HTTP/1.1\r\nHost: hello.dev.test\r\n\r\n'), /^HTTP\/1\.1 429 /);
    } finally {
      for (const s of idle) s.destroy();
    }
    await until('the slots are freed', async () => (await get(ingress.http!.port, 'hello.dev.test')).status === 200);
  });

  test('killing a replica: traffic moves to the other; failed requests during the kill are counted', async () => {
    let failed = 0;
    let ok = 0;
    const byBackend = { A: 0, B: 0 };
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        try {
          const r = await get(ingress.http!.port, 'hello.dev.test');
          if (r.status === 200) {
            ok++;
            byBackend[r.body[0] as 'A' | 'B']++;
          } else failed++;
        } catch {
          failed++;
        }
      }
    })();
    let outAfterMs = 0;
    let bAfterOut = 0;
    try {
      await until('requests flow to both', () => byBackend.A > 3 && byBackend.B > 3);
      const killedAt = Date.now();
      b.closeAllConnections();
      b.close();
      await until('the prober takes B out', () => prober.status('rB') === 'unhealthy', 10_000);
      outAfterMs = Date.now() - killedAt;
      bAfterOut = byBackend.B;
      const okBefore = ok;
      await until('20 more requests', () => ok >= okBefore + 20);
    } finally {
      stop = true;
      await loop;
    }
    console.log(`kill: ${failed} failed of ${ok + failed} requests; B out of the table after ${outAfterMs} ms`);
    assert.equal(byBackend.B, bAfterOut, 'no request reached B once it was taken out');
    // Only a request in flight on B at the moment of the kill can fail (one loop, so at most one).
    assert.ok(failed <= 1, `${failed} failed`);
  });

  test('bad options: no listen address and bad limits are CONFIG_INVALID; a taken port is UNAVAILABLE', async () => {
    const logger = createLogger('silent');
    await assert.rejects(
      startIngress({ listen: {}, routes: () => new Map(), logger }),
      (e) => e instanceof FormError && e.code === 'CONFIG_INVALID',
    );
    await assert.rejects(
      startIngress({
        listen: { http: { host: '127.0.0.1', port: 0 } },
        routes: () => new Map(),
        logger,
        limits: { maxHeadBytes: 0 },
      }),
      (e) => e instanceof FormError && e.code === 'CONFIG_INVALID' && /maxHeadBytes/.test(e.message),
    );
    await assert.rejects(
      startIngress({
        listen: { http: { host: '127.0.0.1', port: ingress.http!.port } },
        routes: () => new Map(),
        logger,
      }),
      (e) => e instanceof FormError && e.code === 'UNAVAILABLE' && /EADDRINUSE/.test(e.message),
    );
  });
});
