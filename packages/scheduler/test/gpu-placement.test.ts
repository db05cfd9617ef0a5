import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  deploymentStatus,
  formatDeploymentStatus,
  type InstanceLike,
  type PlacementNode,
  placementNodesFrom,
  placeReplicas,
} from '../src/index.ts';

const nv = { vendor: '10de', passthrough: true };
const amd = { vendor: '1002', passthrough: true };
const stuck = { vendor: '10de', passthrough: false };
const node = (id: string, gpus: PlacementNode['gpus'] = []): PlacementNode => ({
  id,
  capacity: { vcpu: 8, memMiB: 8192, diskGiB: 100 },
  used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
  healthy: true,
  gpus,
});
const gpuInst = (over: Partial<InstanceLike> = {}): InstanceLike => ({
  id: 'b'.repeat(32),
  replicas: 1,
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  deleted: false,
  gpu: { count: 1 },
  replicaSet: [],
  ...over,
});

test('a GPU instance goes only to nodes with enough passthrough-capable GPUs of the requested vendor', () => {
  const nodes = [node('plain'), node('stuck', [stuck]), node('nv', [nv]), node('nv2', [nv, nv]), node('amd', [amd])];
  for (let i = 0; i < 20; i++) {
    const id = i.toString(16).padStart(32, '0');
    assert.ok(['nv', 'nv2', 'amd'].includes(placeReplicas(gpuInst({ id }), nodes)[0] ?? ''));
    assert.ok(
      ['nv', 'nv2'].includes(placeReplicas(gpuInst({ id, gpu: { count: 1, vendor: 'nvidia' } }), nodes)[0] ?? ''),
    );
    assert.deepEqual(placeReplicas(gpuInst({ id, gpu: { count: 2, vendor: '10de' } }), nodes), ['nv2']);
    assert.deepEqual(placeReplicas(gpuInst({ id, gpu: { count: 1, vendor: 'amd' }, replicas: 3 }), nodes), ['amd']);
  }
  // Without a GPU request nothing changes: every node fits.
  assert.equal(placeReplicas({ ...gpuInst(), gpu: null, replicas: 5 }, nodes).length, 5);
});

test('no node with a usable GPU: PENDING with the reason, never placed', () => {
  const nodes = [node('plain'), node('stuck', [stuck])];
  const inst = gpuInst();
  assert.deepEqual(placeReplicas(inst, nodes), []);
  const s = deploymentStatus(inst, nodes);
  assert.equal(s.status, 'PENDING');
  assert.match(s.reason ?? '', /no healthy node has 1 GPU that can be passed through/);
  assert.match(s.reason ?? '', /1 node\(s\) report GPUs, 0 with a usable one/);
  assert.match(formatDeploymentStatus(s), /^PENDING \{ reason: no healthy node has 1 GPU/);
  const none = deploymentStatus(inst, [node('plain')]);
  assert.match(none.reason ?? '', /no node reports a GPU/);
  // A PENDING without a reason prints as seed 000 writes it.
  assert.equal(formatDeploymentStatus({ status: 'PENDING', running: 0, wanted: 1 }), 'PENDING');
});

test('a GPU replica that failed to boot on a node (a GPU it claimed but could not pass) is healed on another GPU node', () => {
  const nodes = [node('a', [nv]), node('b', [nv]), node('c')];
  const inst = gpuInst();
  const first = placeReplicas(inst, nodes)[0] as string;
  const other = first === 'a' ? 'b' : 'a';
  const failed = gpuInst({
    replicaSet: [{ node: first, state: 'failed', reason: 'Cannot pass GPU 0000:01:00.0', formnetIp: null }],
  });
  assert.deepEqual(placeReplicas(failed, nodes), [other], 'the failed node is skipped, the other GPU node takes it');
  const healing = deploymentStatus(failed, nodes);
  assert.equal(healing.status, 'PENDING');
  assert.match(healing.reason ?? '', /^healing on another GPU node: Cannot pass GPU 0000:01:00.0/);
  const healed = gpuInst({
    replicaSet: [
      { node: first, state: 'failed', reason: 'Cannot pass GPU', formnetIp: null },
      { node: other, state: 'running', reason: null, formnetIp: '10.129.1.2' },
    ],
  });
  assert.deepEqual(deploymentStatus(healed, nodes), { status: 'SUCCESS', running: 1, wanted: 1 });
  // With no other GPU node it waits, saying where it failed.
  const alone = deploymentStatus(
    failed,
    nodes.filter((n) => n.id !== other),
  );
  assert.equal(alone.status, 'PENDING');
  assert.match(alone.reason ?? '', /failed to boot on 1 GPU node/);
});

test('placementNodesFrom carries the GPUs of the node records', () => {
  const gpu = {
    address: '0000:01:00.0',
    vendor: '10de',
    device: '2204',
    iommuGroup: 3,
    driver: 'vfio-pci',
    passthrough: true,
  };
  const [n] = placementNodesFrom(
    [{ id: 'x', capacity: { vcpu: 1, memMiB: 1024, diskGiB: 10 }, heartbeat: null, gpus: [gpu] }],
    0,
    30_000,
    'x',
  );
  assert.deepEqual(n?.gpus, [gpu]);
});
