// Replica health in state (issues 19/20): which replicas a node checks and when it reports (pure,
// health-plan.ts), and the monitor end to end against a real in-memory state store: its verdicts
// become signed instance.health ops (HTTP through a ProbeTransport, CMD through the VMM's guest exec),
// with reasons made safe for terminals.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateKeyPair, generateWireGuardKeyPair } from '@formation/identity';
import type { ProbeTransport } from '@formation/ingress';
import type { HealthcheckSpec } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { vmNameFor } from '@formation/scheduler';
import { createLogger } from '@formation/service';
import { type InstanceView, openStateStore } from '@formation/state';
import type { VmView } from '@formation/vmm';
import { healthReportDue, healthTargets, safeReason } from '../src/health-plan.ts';
import { netnsTransport } from '../src/netns-probe.ts';
import { ReplicaHealthMonitor } from '../src/replica-health.ts';

const FP = 'f'.repeat(64);
const HTTP: HealthcheckSpec = {
  test: { type: 'http', port: 8080, path: '/health' },
  intervalMs: 1000,
  timeoutMs: 1000,
  retries: 1,
  startPeriodMs: 0,
};

const vmOf = (name: string, over: Partial<VmView> = {}): VmView =>
  ({
    id: 'vm-1',
    name,
    state: 'running',
    ready: true,
    readyAt: new Date(Date.now() - 1000).toISOString(),
    createdAt: new Date(Date.now() - 5000).toISOString(),
    source: { kind: 'formpack', id: FP, name: 'web', dir: '/fp' },
    network: { mode: 'tap', ip: '10.129.1.2/24', gateway: '10.129.1.1', mac: '02:00:00:00:00:01', forwards: [] },
    ...over,
  }) as unknown as VmView;

/** A store with one node holding the one replica of an instance whose owner published `spec`. */
function world(spec: HealthcheckSpec) {
  const store = openStateStore({ path: ':memory:' });
  const owner = generateKeyPair();
  const node = generateKeyPair();
  store.author(node, 'node.register', {
    capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
    endpoint: '127.0.0.1:4001',
    p2pPeerId: 'peer1',
    wgPublicKey: generateWireGuardKeyPair().publicKey,
    formnetRange: '10.129.1.0/24',
  });
  store.author(owner, 'formpack.publish', {
    id: FP,
    name: 'web',
    owner: owner.address,
    sha256s: {},
    size: 1,
    service: { expose: [8080], healthcheck: spec },
  });
  const create = store.author(owner, 'instance.create', {
    formpackId: FP,
    name: 'web',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  });
  const id = create.body.id as string;
  store.author(node, 'instance.claim', { instanceId: id, node: node.publicKey });
  store.author(node, 'instance.status', {
    instanceId: id,
    node: node.publicKey,
    state: 'running',
    revision: 0,
    release: 1,
    formnetIp: '10.129.1.2',
  });
  const inst = () => store.views().instances[0] as InstanceView;
  return { store, node, id, inst, vm: vmOf(vmNameFor(inst())) };
}

describe('health-plan (pure)', () => {
  test('safeReason: printable ASCII only, folded, bounded', () => {
    assert.equal(safeReason('exit 1: \u001b[31mboom\n  again'), 'exit 1: ?[31mboom again');
    assert.equal(safeReason('é\u0000x'), '??x');
    assert.equal(safeReason('x'.repeat(500)).length, 160);
  });
  test('netnsTransport refuses targets that are not an IPv4 address, a port and a path (before any command runs)', async () => {
    const t = netnsTransport('fdr-none');
    assert.deepEqual(await t.http('10.0.0.1; rm -rf /', 80, '/', 1000), { ok: false, detail: 'bad target' });
    assert.deepEqual(await t.http('10.0.0.1', 80, 'x', 1000), { ok: false, detail: 'bad target' });
    assert.deepEqual(await t.tcp('10.0.0.1', 0, 1000), { ok: false, detail: 'bad target' });
  });
  test('healthReportDue: a new verdict or release, not a new reason', () => {
    const rep = { status: 'healthy' as const, release: 1, reason: null, ts: 1 };
    assert.equal(healthReportDue(null, { status: 'starting', reason: null }, 1), true);
    assert.equal(healthReportDue(rep, { status: 'healthy', reason: null }, 1), false);
    assert.equal(healthReportDue(rep, { status: 'unhealthy', reason: 'x' }, 1), true);
    assert.equal(healthReportDue(rep, { status: 'healthy', reason: null }, 2), true);
    assert.equal(
      healthReportDue({ ...rep, status: 'unhealthy', reason: 'a' }, { status: 'unhealthy', reason: 'b' }, 1),
      false,
    );
  });
  test('healthTargets: this node’s ready replica of an instance with a HEALTHCHECK; not others, not unready VMs', () => {
    const w = world(HTTP);
    const views = w.store.views().instances;
    const t = healthTargets(views, w.node.publicKey, [w.vm], vmNameFor);
    assert.equal(t.length, 1);
    assert.equal(t[0]?.address, '10.129.1.2');
    assert.equal(t[0]?.release, 1);
    assert.equal(healthTargets(views, 'someone-else', [w.vm], vmNameFor).length, 0);
    assert.equal(healthTargets(views, w.node.publicKey, [{ ...w.vm, ready: false }], vmNameFor).length, 0);
    // HTTP needs the formnet address; a user-mode VM has none.
    const user = { ...w.vm, network: { ...w.vm.network, mode: 'user' } } as VmView;
    assert.equal(healthTargets(views, w.node.publicKey, [user], vmNameFor).length, 0);
    w.store.close();
  });
});

describe('ReplicaHealthMonitor against a state store', () => {
  test('HTTP: starting → healthy → unhealthy (with the reason) as signed instance.health ops', async () => {
    const w = world(HTTP);
    let ok = true;
    const seen: string[] = [];
    const transport: ProbeTransport = {
      http: async (address, port, path) => {
        seen.push(`${address}:${port}${path}`);
        return ok ? { ok: true } : { ok: false, detail: 'status 503\u001b[2J' };
      },
      tcp: async () => ({ ok: true }),
    };
    const m = new ReplicaHealthMonitor({
      nodeKey: w.node,
      store: w.store,
      vmm: { list: () => [w.vm], exec: async () => ({ exitcode: 0, stdout: '', stderr: '' }) },
      logger: createLogger('silent'),
      transport,
      refreshMs: 200,
    });
    m.start();
    try {
      const health = () => w.inst().replicaSet[0]?.health;
      await until('the replica reported healthy', () => health()?.status === 'healthy');
      assert.equal(health()?.release, 1);
      assert.ok(seen.includes('10.129.1.2:8080/health'));
      ok = false;
      await until('the replica reported unhealthy', () => health()?.status === 'unhealthy');
      assert.equal(health()?.reason, 'status 503?[2J', 'the reason is stored made safe');
    } finally {
      m.close();
      w.store.close();
    }
  });

  test('CMD runs through the guest exec; a failing command is unhealthy with its exit code', async () => {
    const w = world({ ...HTTP, test: { type: 'cmd', command: { form: 'shell', command: 'test -f /ok' } } });
    const calls: string[][] = [];
    const m = new ReplicaHealthMonitor({
      nodeKey: w.node,
      store: w.store,
      vmm: {
        list: () => [w.vm],
        exec: async (vmId, path, args) => {
          calls.push([vmId, path, ...(args ?? [])]);
          return { exitcode: 1, stdout: '', stderr: 'no such file\n' };
        },
      },
      logger: createLogger('silent'),
      refreshMs: 200,
    });
    m.start();
    try {
      await until('the replica reported unhealthy', () => w.inst().replicaSet[0]?.health?.status === 'unhealthy');
      assert.deepEqual(calls[0], ['vm-1', '/bin/sh', '-c', 'test -f /ok']);
      assert.equal(w.inst().replicaSet[0]?.health?.reason, 'exit 1: no such file');
    } finally {
      m.close();
      w.store.close();
    }
  });
});
