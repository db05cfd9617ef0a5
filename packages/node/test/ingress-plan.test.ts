import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildRouteTable } from '@formation/ingress';
import { ingressPlan, relayPeers, replicaKey } from '../src/ingress.ts';

type Views = Parameters<typeof ingressPlan>[0];
const hc = {
  test: { type: 'http' as const, port: 8080, path: '/' },
  intervalMs: 1000,
  timeoutMs: 500,
  retries: 1,
  startPeriodMs: 0,
};
const replica = (node: string, ip: string | null, state: string, ts = 1000) => ({
  node,
  claimedBy: node,
  assigned: true,
  state,
  formnetIp: ip,
  revision: 0,
  reason: null,
  ts,
});
const instance = (id: string, name: string, over: Record<string, unknown> = {}) => ({
  id,
  name,
  deleted: false,
  desired: 'running',
  overQuota: false,
  formpack: { name, sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [8080] } },
  replicaSet: [replica('n1', '10.129.1.2', 'running'), replica('n2', '10.129.2.2', 'booting')],
  ...over,
});

test('ingressPlan: names from DNS, running replicas routed, unpublished / deleted / stopped instances get no route', () => {
  const views = {
    instances: [
      instance('a', 'web'),
      instance('b', 'hc', {
        formpack: { name: 'hc', sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [8080], healthcheck: hc } },
      }),
      instance('c', 'old', { formpack: { name: 'old', sha256s: {}, size: 1, publishedBy: 'p', service: null } }),
      instance('d', 'gone', { deleted: true }),
      instance('e', 'off', { desired: 'stopped' }),
      instance('f', 'quiet', {
        formpack: { name: 'quiet', sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [] } },
      }),
    ],
    dns: [
      { name: 'web.dev.formation.local', source: 'instance', instanceId: 'a', addresses: [], owner: 'x' },
      { name: 'hc', source: 'instance', instanceId: 'b', addresses: [], owner: 'x' },
      { name: 'old.dev.formation.local', source: 'instance', instanceId: 'c', addresses: [], owner: 'x' },
      { name: 'GONE.dev.formation.local', source: 'instance', instanceId: 'd', addresses: [], owner: 'x' },
    ],
  } as unknown as Views;
  const plan = ingressPlan(views, 'dev.formation.local', 5000);
  assert.deepEqual(
    plan.instances.map((i) => [i.id, i.hosts]),
    [
      ['a', ['web.dev.formation.local']],
      ['b', ['hc.dev.formation.local']],
    ],
  );
  // Only the HTTP-checked instance's running replica is probed, from its last report.
  assert.deepEqual(plan.probes, [
    { replicaId: replicaKey('b', 'n1'), address: '10.129.1.2', startedAt: 1000, spec: hc },
  ]);

  // The table: the running replica only; a health-checked one only once healthy.
  let healthy = false;
  const table = () =>
    buildRouteTable({
      instances: plan.instances,
      health: (id) => (id === replicaKey('b', 'n1') ? (healthy ? 'healthy' : 'starting') : undefined),
    });
  assert.deepEqual(
    table()
      .get('web.dev.formation.local')
      ?.backends.map((b) => [b.address, b.httpPort]),
    [['10.129.1.2', 8080]],
  );
  assert.deepEqual(table().get('hc.dev.formation.local')?.backends, []);
  healthy = true;
  assert.equal(table().get('hc.dev.formation.local')?.backends.length, 1);
});

test('ingressPlan: a CMD health check (not run by the node yet) does not hold the replica out', () => {
  const cmd = { ...hc, test: { type: 'cmd' as const, command: { form: 'shell' as const, command: 'true' } } };
  const views = {
    instances: [
      instance('a', 'web', {
        formpack: { name: 'web', sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [80], healthcheck: cmd } },
      }),
    ],
    dns: [{ name: 'web', source: 'instance', instanceId: 'a', addresses: [], owner: 'x' }],
  } as unknown as Views;
  const plan = ingressPlan(views, 'dev.formation.local', 0);
  assert.deepEqual(plan.probes, []);
  assert.equal(plan.instances[0]?.healthchecked, false);
});

test("ingressPlan: the holding node's verdict (instance.health) takes its replica out: unhealthy always, CMD until its first pass", () => {
  const cmd = { ...hc, test: { type: 'cmd' as const, command: { form: 'shell' as const, command: 'true' } } };
  const verdict = (status: string, release = 2) => ({ status, release, reason: null, ts: 1 });
  const routed = (check: typeof hc | typeof cmd, health: unknown, release: number | null = 2) => {
    const views = {
      instances: [
        instance('a', 'web', {
          formpack: {
            name: 'web',
            sha256s: {},
            size: 1,
            publishedBy: 'p',
            service: { expose: [80], healthcheck: check },
          },
          replicaSet: [{ ...replica('n1', '10.129.1.2', 'running'), release, health }],
        }),
      ],
      dns: [{ name: 'web', source: 'instance', instanceId: 'a', addresses: [], owner: 'x' }],
    } as unknown as Views;
    return ingressPlan(views, 'dev.formation.local', 0).instances[0]?.replicas[0]?.running;
  };
  for (const [name, check, health, release, want] of [
    ['CMD, no verdict yet (an older node): routed', cmd, null, 2, true],
    ['CMD, starting: held out', cmd, verdict('starting'), 2, false],
    ['CMD, healthy: routed', cmd, verdict('healthy'), 2, true],
    ['CMD, unhealthy: held out', cmd, verdict('unhealthy'), 2, false],
    ['HTTP, unhealthy per its node: held out', hc, verdict('unhealthy'), 2, false],
    ['HTTP, starting per its node: the prober decides', hc, verdict('starting'), 2, true],
    ['unhealthy about the previous release: not this VM', cmd, verdict('unhealthy', 1), 2, true],
  ] as const) {
    assert.equal(routed(check, health, release), want, name);
  }
});

test('ingressPlan: a verified custom domain is a host, a pending / contested / lapsed one is not; active TCP ports only', () => {
  const domain = (name: string, state: string) => ({
    name,
    instanceId: 'a',
    state,
    owner: 'x',
    token: 't',
    claim: name,
  });
  const port = (p: number, state: string, instanceId = 'a') => ({
    port: p,
    instanceId,
    state,
    owner: 'x',
    target: 5432,
    claim: `c${p}`,
    ts: 1,
    grantedBy: [],
  });
  const views = {
    instances: [
      instance('a', 'web'),
      // Only a TCP mapping (no EXPOSE): still routed for its port.
      instance('g', 'db', {
        formpack: { name: 'db', sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [] } },
      }),
    ],
    dns: [{ name: 'web.dev.formation.local', source: 'instance', instanceId: 'a', addresses: [], owner: 'x' }],
    domains: [
      domain('shop.example.com', 'verified'),
      domain('wait.example.com', 'pending'),
      domain('war.example.com', 'contested'),
      domain('gone.example.com', 'lapsed'),
    ],
    ports: [port(15432, 'active'), port(15433, 'pending'), port(15434, 'taken'), port(16000, 'active', 'g')],
  } as unknown as Views;
  const plan = ingressPlan(views, 'dev.formation.local', 5000);
  assert.deepEqual(
    plan.instances.map((i) => [i.id, i.hosts, i.tcp ?? []]),
    [
      ['a', ['web.dev.formation.local', 'shop.example.com'], [{ public: 15432, target: 5432 }]],
      ['g', [], [{ public: 16000, target: 5432 }]],
    ],
  );
});

test('ingressPlan: a suspended replica stays routed (its node wakes it on the connection) and is not probed', () => {
  const views = {
    instances: [
      instance('a', 'web', {
        formpack: { name: 'web', sha256s: {}, size: 1, publishedBy: 'p', service: { expose: [8080], healthcheck: hc } },
        replicaSet: [replica('n1', '10.129.1.2', 'suspended'), replica('n2', '10.129.2.2', 'running')],
      }),
    ],
    dns: [{ name: 'web', source: 'instance', instanceId: 'a', addresses: [], owner: 'x' }],
  } as unknown as Views;
  const plan = ingressPlan(views, 'dev.formation.local', 5000);
  assert.deepEqual(
    plan.probes.map((p) => p.address),
    ['10.129.2.2'],
    'probing a suspended replica would wake it, and keep it awake',
  );
  const table = buildRouteTable({ instances: plan.instances, health: () => undefined });
  assert.deepEqual(
    table.get('web.dev.formation.local')?.backends.map((b) => b.address),
    ['10.129.1.2', '10.129.2.2'],
  );
});

test('exploit: a node registered with a LAN endpoint is not a challenge relay target (no requests into a LAN)', () => {
  const nodes = ['198.51.100.12:3001', '192.168.1.5:3001', '10.0.0.7:3001', '172.20.0.1:3001', '169.254.169.254:80']
    .concat(['100.64.1.1:3001', '127.0.0.1:3001', '10.129.0.1:3001', '224.0.0.1:3001', '198.51.100.11:3001'])
    .concat(['203.0.113.9:3001', 'node.example:3001', '198.51.100.12:4001'])
    .map((endpoint) => ({ endpoint }));
  assert.deepEqual(relayPeers(nodes, '198.51.100.11'), ['198.51.100.12', '203.0.113.9']);
});
