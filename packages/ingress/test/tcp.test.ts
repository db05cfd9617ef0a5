// Plain TCP mappings (issue 19): the pure table, then real listeners on loopback forwarding to real
// echo servers (127.0.0.2/.3 play two replicas): bytes both ways, spread and retry, listeners opened
// and closed by syncTcp, an unknown or unreachable port closed, the per-source limit.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import { buildTcpRouteTable, type Ingress, type RouteInput, startIngress, type TcpRouteTable } from '../src/index.ts';

const inst = (
  id: string,
  tcp: Array<{ public: number; target: number }>,
  replicas: RouteInput['instances'][number]['replicas'],
) => ({
  id,
  hosts: [`${id}.test`],
  expose: [8080],
  healthchecked: false,
  replicas,
  tcp,
});

test('buildTcpRouteTable: routable replicas at the guest port; a port two instances list is nobody’s; formnet only', () => {
  const t = buildTcpRouteTable({
    instances: [
      inst(
        'db',
        [{ public: 15432, target: 5432 }],
        [
          { id: 'r1', address: '10.129.1.2', running: true },
          { id: 'r2', address: '10.129.2.2', running: false },
          { id: 'r3', address: '127.0.0.1', running: true },
        ],
      ),
      inst('a', [{ public: 16000, target: 1 }], [{ id: 'a1', address: '10.129.1.3', running: true }]),
      inst('b', [{ public: 16000, target: 2 }], [{ id: 'b1', address: '10.129.1.4', running: true }]),
    ],
    health: () => undefined,
  });
  assert.deepEqual(t.get(15432), {
    instance: 'db',
    backends: [{ id: 'r1', address: '10.129.1.2', httpPort: null, tlsPort: null, tcpPort: 5432 }],
  });
  assert.equal(t.has(16000), false);
});

describe('TCP mappings on loopback', () => {
  const echo = (address: string, name: string) => {
    const s = createServer((c) => c.on('data', (d) => c.write(`${name}:${d}`)));
    s.listen(0, address);
    return s;
  };
  let a: Server;
  let b: Server;
  let ingress: Ingress;
  let table: TcpRouteTable = new Map();
  const P1 = 41_000 + (process.pid % 1000);
  const P2 = P1 + 1000;
  before(async () => {
    a = echo('127.0.0.2', 'A');
    b = echo('127.0.0.3', 'B');
    await Promise.all([once(a, 'listening'), once(b, 'listening')]);
    const port = (s: Server) => (s.address() as { port: number }).port;
    // Both replicas serve the same guest port in a real instance; here each echo has its own port, so
    // two mappings of one table are built by hand.
    table = new Map([
      [
        P1,
        {
          instance: 'db',
          backends: [
            { id: 'rA', address: '127.0.0.2', httpPort: null, tlsPort: null, tcpPort: port(a) },
            { id: 'rB', address: '127.0.0.3', httpPort: null, tlsPort: null, tcpPort: port(b) },
          ],
        },
      ],
      [
        P2,
        { instance: 'gone', backends: [{ id: 'rX', address: '127.0.0.4', httpPort: null, tlsPort: null, tcpPort: 9 }] },
      ],
    ]);
    ingress = await startIngress({
      listen: {},
      routes: () => new Map(),
      tcp: { host: '127.0.0.1', routes: () => table },
      limits: { maxConnectionsPerSource: 3, connectTimeoutMs: 500 },
      logger: createLogger('silent'),
    });
  });
  after(async () => {
    await ingress?.close();
    a?.close();
    b?.close();
  });

  const talk = (port: number, text: string): Promise<string> =>
    new Promise((resolve) => {
      const c = connect({ port, host: '127.0.0.1' });
      let got = '';
      c.on('connect', () => c.write(text));
      c.on('data', (d) => {
        got += d;
        c.end();
      });
      c.on('error', () => resolve(`error`));
      c.on('close', () => resolve(got));
    });

  test('syncTcp opens the listeners; bytes go both ways, spread over the replicas', async () => {
    assert.deepEqual(await ingress.syncTcp([P1]), []);
    assert.deepEqual(ingress.tcpPorts(), [P1]);
    const answers = await Promise.all([talk(P1, 'x'), talk(P1, 'y')]);
    assert.deepEqual(answers.map((s) => s.slice(2)).sort(), ['x', 'y']);
    assert.deepEqual(new Set(answers.map((s) => s[0])), new Set(['A', 'B']));
  });

  test('a replica that refuses is skipped; a mapping with no reachable replica is closed at once', async () => {
    b.close();
    await once(b, 'close');
    for (let i = 0; i < 3; i++) assert.equal(await talk(P1, 'z'), 'A:z');
    await ingress.syncTcp([P1, P2]);
    assert.equal(await talk(P2, 'q'), '');
    assert.ok((ingress.stats().refused['no-replica-reachable'] ?? 0) >= 1);
  });

  test('the per-source limit holds on TCP mappings too', async () => {
    const open: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const c = connect({ port: P1, host: '127.0.0.1' });
      await once(c, 'connect');
      open.push(c);
    }
    assert.equal(await talk(P1, 'w'), '');
    assert.ok((ingress.stats().refused['too-many-from-source'] ?? 0) >= 1);
    for (const c of open) c.destroy();
  });

  test('syncTcp closes a port no longer held; a port in use elsewhere is reported, not thrown', async () => {
    await ingress.syncTcp([]);
    assert.deepEqual(ingress.tcpPorts(), []);
    assert.equal(await talk(P1, 'v'), 'error');
    const squatter = createServer().listen(P1, '127.0.0.1');
    await once(squatter, 'listening');
    try {
      assert.deepEqual(await ingress.syncTcp([P1]), [{ port: P1, error: 'EADDRINUSE' }]);
    } finally {
      squatter.close();
    }
  });
});
