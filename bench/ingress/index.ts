// Ingress benchmarks on loopback (no root): HTTP requests/s and p50/p99 through the ingress vs directly
// to the backend (a new connection per request, as visitors' first requests are), a TLS handshake +
// request through the SNI passthrough vs direct, and failover: how long after a replica is killed the
// prober takes it out (1 s interval, 1 retry), and how many requests failed meanwhile. Plain TCP
// mappings: connect + one round trip, and bulk throughput, through a mapping vs direct. Certificate
// issuance time (root + Pebble): in the guest and at the ingress (end of the file).
// Backends on 127.0.0.2/127.0.0.3 stand in for replicas; the TLS backend has its own certificate.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { createServer as createNetServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { buildRouteTable, createProber, startIngress } from '@formation/ingress';
import { selfSignedCert } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { report } from '../report.ts';

const N = Number(process.env.BENCH_INGRESS_REQUESTS ?? 2000);
const dir = mkdtempSync(join(tmpdir(), 'bench-ingress-'));
const cert = selfSignedCert(dir, 'server', 's.bench.test', 'DNS:s.bench.test,DNS:x.bench.test');
const ca = readFileSync(cert.certFile);
const terminateContext = createSecureContext({ key: readFileSync(cert.keyFile), cert: ca });

const backend = (name: string) => createServer((_q, r) => r.end(name));
const a = backend('A');
const b = backend('B');
a.listen(0, '127.0.0.2');
await once(a, 'listening');
const port = (a.address() as { port: number }).port;
b.listen(port, '127.0.0.3');
await once(b, 'listening');
const tls = createTlsServer({ key: readFileSync(cert.keyFile), cert: ca }, (s) => {
  s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'));
  s.on('error', () => s.destroy());
});
tls.listen(0, '127.0.0.4');
await once(tls, 'listening');
const tlsPort = (tls.address() as { port: number }).port;

// A TCP service (echo) on 127.0.0.5, and a free port for its mapping.
const echo = createNetServer((c) => c.pipe(c));
echo.listen(0, '127.0.0.5');
await once(echo, 'listening');
const echoPort = (echo.address() as { port: number }).port;
const spare = createNetServer().listen(0, '127.0.0.1');
await once(spare, 'listening');
const mapped = (spare.address() as { port: number }).port;
spare.close();
const tcpTable = new Map([
  [
    mapped,
    { instance: 't', backends: [{ id: 't', address: '127.0.0.5', httpPort: null, tlsPort: null, tcpPort: echoPort }] },
  ],
]);

const logger = createLogger('silent');
const prober = createProber({ logger });
const spec = {
  test: { type: 'http' as const, port, path: '/' },
  intervalMs: 1000,
  timeoutMs: 1000,
  retries: 1,
  startPeriodMs: 0,
};
prober.set(['2', '3'].map((x) => ({ replicaId: `r${x}`, address: `127.0.0.${x}`, startedAt: Date.now(), spec })));
const ingress = await startIngress({
  listen: { http: { host: '127.0.0.1', port: 0 }, tls: { host: '127.0.0.1', port: 0 } },
  tcp: { host: '127.0.0.1', routes: () => tcpTable },
  logger,
  routes: () => {
    const t = new Map(
      buildRouteTable({
        instances: [
          {
            id: 'i',
            hosts: ['a.bench.test'],
            expose: [port],
            healthchecked: true,
            replicas: ['2', '3'].map((x) => ({ id: `r${x}`, address: `127.0.0.${x}`, running: true })),
          },
        ],
        health: (id) => prober.status(id),
        addressAllowed: (ip) => ip.startsWith('127.0.0.'),
      }),
    );
    t.set('s.bench.test', { instance: 's', backends: [{ id: 's', address: '127.0.0.4', httpPort: null, tlsPort }] });
    // TERMINATE=ingress: TLS ends at the ingress, plain HTTP to backend A.
    t.set('x.bench.test', {
      instance: 'x',
      backends: [{ id: 'x', address: '127.0.0.2', httpPort: port, tlsPort: null }],
      terminate: true,
    });
    return t;
  },
  terminate: {
    context: (h) => (h === 'x.bench.test' ? terminateContext : undefined),
    challenge: () => undefined,
  },
});
while (prober.status('r2') !== 'healthy' || prober.status('r3') !== 'healthy')
  await new Promise((r) => setTimeout(r, 50));

const get = (host: string, p: number) =>
  new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const q = request({ host, port: p, headers: { host: 'a.bench.test' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () =>
        res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`${res.statusCode}`)),
      );
    });
    q.on('error', reject);
    q.end();
  });
const tlsGet = (p: number, servername = 's.bench.test') =>
  new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const s = tlsConnect({ host: '127.0.0.1', port: p, servername, ca }, () =>
      s.write(`GET / HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`),
    );
    s.on('data', () => {});
    s.on('end', () => {
      s.destroy();
      resolve(performance.now() - t0);
    });
    s.on('error', reject);
  });
const directTls = (p: number) =>
  new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const s = tlsConnect({ host: '127.0.0.4', port: p, servername: 's.bench.test', ca }, () =>
      s.write('GET / HTTP/1.1\r\n\r\n'),
    );
    s.on('data', () => {});
    s.on('end', () => {
      s.destroy();
      resolve(performance.now() - t0);
    });
    s.on('error', reject);
  });

async function measure(name: string, one: () => Promise<number>, n: number, conc: number) {
  const lat: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (lat.length < n) lat.push(await one());
    }),
  );
  const s = (performance.now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  report(`ingress.${name}_rps`, lat.length / s, 'requests/s', { concurrency: conc });
  report(`ingress.${name}_p50`, lat[Math.floor(lat.length * 0.5)]!, 'ms', { concurrency: conc });
  report(`ingress.${name}_p99`, lat[Math.floor(lat.length * 0.99)]!, 'ms', { concurrency: conc });
}

for (const conc of [1, 8]) {
  await measure('http_direct', () => get('127.0.0.2', port), N, conc);
  await measure('http_via_ingress', () => get('127.0.0.1', ingress.http!.port), N, conc);
}
await measure('tls_direct', () => directTls(tlsPort), N / 4, 4);
await measure('tls_via_ingress', () => tlsGet(ingress.tls!.port), N / 4, 4);
// TLS ended at the ingress (TERMINATE=ingress): handshake with the ingress, plain HTTP to the backend.
await measure('tls_terminated_at_ingress', () => tlsGet(ingress.tls!.port, 'x.bench.test'), N / 4, 4);

// Plain TCP: connect, write 16 bytes, read them back, close.
await ingress.syncTcp([mapped]);
const roundTrip = (host: string, p: number) =>
  new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const c = netConnect({ host, port: p }, () => c.write('0123456789abcdef'));
    let got = 0;
    c.on('data', (d) => {
      got += d.length;
      if (got >= 16) c.end();
    });
    c.on('close', () => (got >= 16 ? resolve(performance.now() - t0) : reject(new Error('short'))));
    c.on('error', reject);
  });
await measure('tcp_direct', () => roundTrip('127.0.0.5', echoPort), N / 2, 4);
await measure('tcp_via_mapping', () => roundTrip('127.0.0.1', mapped), N / 2, 4);
// Bulk: 64 MiB through the echo (both directions), one connection.
const bulk = (host: string, p: number) =>
  new Promise<number>((resolve, reject) => {
    const total = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 7);
    const t0 = performance.now();
    const c = netConnect({ host, port: p });
    let got = 0;
    c.on('data', (d) => {
      got += d.length;
      if (got >= total) {
        c.destroy();
        resolve(total / 1024 / 1024 / ((performance.now() - t0) / 1000));
      }
    });
    c.on('error', reject);
    c.on('connect', async () => {
      for (let sent = 0; sent < total; sent += chunk.length) if (!c.write(chunk)) await once(c, 'drain');
    });
  });
report('ingress.tcp_bulk_direct', await bulk('127.0.0.5', echoPort), 'MiB/s', { bytes: '64 MiB each way' });
report('ingress.tcp_bulk_via_mapping', await bulk('127.0.0.1', mapped), 'MiB/s', { bytes: '64 MiB each way' });

// Failover: kill B while one client loops; time until the prober takes it out; failed requests.
let failed = 0;
let stop = false;
const loop = (async () => {
  while (!stop) await get('127.0.0.1', ingress.http!.port).catch(() => failed++);
})();
await new Promise((r) => setTimeout(r, 300));
const killed = performance.now();
b.closeAllConnections();
b.close();
while (prober.status('r3') !== 'unhealthy') await new Promise((r) => setTimeout(r, 10));
report('ingress.failover_out_of_table', performance.now() - killed, 'ms', { intervalMs: 1000, retries: 1 });
stop = true;
await loop;
report('ingress.failover_failed_requests', failed, 'requests', {
  note: 'new connections to a dead replica are retried',
});

await ingress.close();
prober.close();
a.close();
tls.close();
echo.close();
rmSync(dir, { recursive: true, force: true });

// Certificate issuance (root with Pebble; BENCH_INGRESS_ISSUANCE=0 skips), from the tests that do it for
// real: in the guest (packages/node/test/attest-https-e2e.test.ts: uacme in a TCG guest, TLS-ALPN-01 through
// the SNI passthrough; it also builds the Formpack and boots the guest, ~1-3 min) and at the ingress
// (packages/node/test/ingress-tls-terminate.test.ts: TERMINATE=ingress, the node's own ACME client,
// HTTP-01 on its :80). Each file runs as it does under `node --test`; its own timing is reported.
const root = new URL('../../', import.meta.url).pathname;
const haveIssuance =
  process.env.BENCH_INGRESS_ISSUANCE !== '0' &&
  process.getuid?.() === 0 &&
  spawnSync('sh', ['-c', 'command -v pebble && command -v pebble-challtestsrv'], { stdio: 'ignore' }).status === 0;
if (!haveIssuance) {
  report('ingress.cert_issuance', 0, 'skipped', { why: 'needs root and pebble (or BENCH_INGRESS_ISSUANCE=0)' });
} else {
  const runFile = (file: string) =>
    spawnSync(process.execPath, [join(root, file)], {
      encoding: 'utf8',
      timeout: 600_000,
      env: { ...process.env, FORM_LOG_LEVEL: 'silent' },
    });
  const atIngress = runFile('packages/node/test/ingress-tls-terminate.test.ts');
  const m = /certificate issued by ACME at the ingress in (\d+) ms \(B\), (\d+) ms \(A, relayed\)/.exec(
    atIngress.stdout,
  );
  if (m) {
    report('ingress.cert_issuance_at_ingress', Number(m[1]), 'ms', { challenge: 'http-01', ca: 'pebble' });
    report('ingress.cert_issuance_at_ingress_relayed', Number(m[2]), 'ms', {
      note: "the CA's check reached another node, which relayed it",
    });
  } else report('ingress.cert_issuance_at_ingress', 0, 'failed', { tail: atIngress.stdout.slice(-400) });
  const inGuest = runFile('packages/node/test/attest-https-e2e.test.ts');
  const t = /https e2e timings \(ms\): (\{.*\})/.exec(inGuest.stderr)?.[1];
  const timings = t ? (JSON.parse(t) as Record<string, number>) : {};
  if (timings.issuance) {
    report('ingress.cert_issuance_in_guest', timings.issuance, 'ms', {
      challenge: 'tls-alpn-01 through the passthrough',
      ca: 'pebble',
      guestBootMs: timings.boot,
    });
  } else
    report('ingress.cert_issuance_in_guest', 0, 'failed', { tail: `${inGuest.stdout}${inGuest.stderr}`.slice(-400) });
}
