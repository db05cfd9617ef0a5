import assert from 'node:assert/strict';
import { test } from 'node:test';
import { explainUnplaceable, type PlacementNode, placeReplicas } from '../src/index.ts';

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
