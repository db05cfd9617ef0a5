import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainUnplaceable, isNodeHealthy, type PlacementNode, placeReplicas } from '../src/index.ts';

const node = (id: string, over: Partial<PlacementNode> = {}): PlacementNode => ({
  id,
  capacity: { vcpu: 8, memMiB: 8192, diskGiB: 100 },
  used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
  healthy: true,
  ...over,
});
const inst = { id: 'a'.repeat(32), replicas: 2, resources: { vcpu: 1, memMiB: 512, diskGiB: 5 } };

test('placement is deterministic whatever the node order, and never repeats a node', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4'].map((id) => node(id));
  const a = placeReplicas(inst, nodes);
  const b = placeReplicas(inst, [...nodes].reverse());
  assert.deepEqual(a, b);
  assert.equal(a.length, 2);
  assert.equal(new Set(a).size, 2);
});

test('unhealthy and full nodes are skipped; fewer nodes than replicas gives fewer replicas', () => {
  const nodes = [node('n1', { healthy: false }), node('n2', { used: { vcpu: 8, memMiB: 0, diskGiB: 0 } }), node('n3')];
  assert.deepEqual(placeReplicas({ ...inst, replicas: 3 }, nodes), ['n3']);
});

test('removing a node that was not chosen does not move replicas', () => {
  const nodes = ['n1', 'n2', 'n3', 'n4', 'n5'].map((id) => node(id));
  const chosen = placeReplicas(inst, nodes);
  const others = nodes.filter((n) => !chosen.includes(n.id));
  assert.deepEqual(
    placeReplicas(
      inst,
      nodes.filter((n) => n.id !== others[0]!.id),
    ),
    chosen,
  );
});

test('unplaceable instance explains the numbers', () => {
  const why = explainUnplaceable({ ...inst, resources: { vcpu: 64, memMiB: 512, diskGiB: 5 } }, [node('n1')]);
  assert.match(why, /64 vCPU requested, at most 8 free/);
  assert.match(explainUnplaceable(inst, [node('n1', { healthy: false })]), /no healthy node/);
});

test('deployment status: PENDING, SUCCESS, FAILURE with replica reasons, FAILURE when no node can hold it', async () => {
  const { deploymentStatus, formatDeploymentStatus } = await import('../src/index.ts');
  const base = { id: 'b'.repeat(32), replicas: 1, deleted: false, resources: { vcpu: 1, memMiB: 512, diskGiB: 5 } };
  const r = (state: string, reason: string | null = null) => ({ node: 'n1', state, reason, formnetIp: null });
  assert.equal(deploymentStatus({ ...base, replicaSet: [] }, [node('n1')]).status, 'PENDING');
  assert.equal(deploymentStatus({ ...base, replicaSet: [r('starting')] }, 1).status, 'PENDING');
  assert.equal(deploymentStatus({ ...base, replicaSet: [r('running')] }, 1).status, 'SUCCESS');
  const failed = deploymentStatus({ ...base, replicaSet: [r('failed', 'entrypoint exited')] }, 1);
  assert.equal(formatDeploymentStatus(failed), 'FAILURE { reason: entrypoint exited }');
  const big = deploymentStatus({ ...base, resources: { vcpu: 64, memMiB: 512, diskGiB: 5 }, replicaSet: [] }, [
    node('n1'),
  ]);
  assert.equal(big.status, 'FAILURE');
  assert.match(big.reason ?? '', /64 vCPU requested, at most 8 free/);
  // three replicas asked on a two-node network: two running is success
  assert.equal(
    deploymentStatus({ ...base, replicas: 3, replicaSet: [r('running'), { ...r('running'), node: 'n2' }] }, 2).status,
    'SUCCESS',
  );
});

test('a node that stopped beating loses its replicas to the next node; back, placement returns to it', () => {
  const now = 1_000_000;
  const beats = [
    { id: 'a', heartbeat: { ts: now - 1000, status: 'healthy' } },
    { id: 'b', heartbeat: { ts: now - 1000, status: 'healthy' } },
    { id: 'c', heartbeat: { ts: now - 1000, status: 'healthy' } },
    { id: 'd', heartbeat: { ts: now - 1000, status: 'healthy' } },
  ];
  const res = { vcpu: 1, memMiB: 512, diskGiB: 5 };
  const cap = { vcpu: 8, memMiB: 8192, diskGiB: 100 };
  const nodesAt = (t: number, hb: typeof beats) =>
    hb.map((n) => ({
      id: n.id,
      capacity: cap,
      used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
      healthy: isNodeHealthy(n, t, 5000),
    }));
  const inst = { id: 'inst-1', replicas: 3, resources: res };
  const before = placeReplicas(inst, nodesAt(now, beats));
  assert.equal(before.length, 3);
  const victim = before[1] as string;
  const spare = ['a', 'b', 'c', 'd'].find((x) => !before.includes(x)) as string;
  // The victim's last beat is 6 s old at now + 5 s: over the 5 s timeout.
  const stale = beats.map((n) => (n.id === victim ? n : { ...n, heartbeat: { ts: now + 4000, status: 'healthy' } }));
  const healed = placeReplicas(inst, nodesAt(now + 5000, stale));
  assert.deepEqual([...healed].sort(), [...before.filter((x) => x !== victim), spare].sort());
  // Draining counts as gone; a node never counts itself out; no heartbeat at all is not healthy.
  assert.equal(isNodeHealthy({ id: 'x', heartbeat: { ts: now, status: 'draining' } }, now, 5000), false);
  assert.equal(isNodeHealthy({ id: 'x', heartbeat: null }, now, 5000, 'x'), true);
  assert.equal(isNodeHealthy({ id: 'x', heartbeat: null }, now, 5000), false);
  // Back: it beats again and the original placement returns (the stand-in is surplus).
  assert.deepEqual(placeReplicas(inst, nodesAt(now, beats)), before);
});

test('deployment status counts a running replica only while its node is healthy', async () => {
  const { deploymentStatus } = await import('../src/index.ts');
  const replica = (n: string) => ({ node: n, state: 'running', reason: null, formnetIp: '10.129.1.2' });
  const i = { ...inst, replicas: 2, deleted: false, replicaSet: [replica('a'), replica('b')] };
  assert.equal(deploymentStatus(i, [node('a'), node('b')]).status, 'SUCCESS');
  const s = deploymentStatus(i, [node('a'), node('b', { healthy: false })]);
  assert.equal(s.running, 1);
  assert.equal(s.status, 'PENDING');
});

test('an instance over its owner quota is placed nowhere and its status says why', async () => {
  const { deploymentStatus } = await import('../src/index.ts');
  const nodes = ['n1', 'n2', 'n3'].map((id) => node(id));
  assert.equal(placeReplicas({ ...inst, overQuota: false }, nodes).length, 2);
  assert.deepEqual(placeReplicas({ ...inst, overQuota: true }, nodes), []);
  assert.match(explainUnplaceable({ ...inst, overQuota: true }, nodes), /over its owner's quota/);
  const s = deploymentStatus({ ...inst, deleted: false, overQuota: true, replicaSet: [] }, nodes);
  assert.equal(s.status, 'FAILURE');
  assert.match(s.reason ?? '', /over its owner's quota/);
});
