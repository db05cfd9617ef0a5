import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, generateWireGuardKeyPair, type KeyPair } from '@formation/identity';
import type { GpuDevice } from '@formation/interface';
import { deploymentStatus, placementNodesFrom } from '@formation/scheduler';
import { openStateStore, type StateStore } from '@formation/state';
import type { VmView } from '@formation/vmm';
import { gpuRecordUpdate } from '../src/gpu-report.ts';
import { type Action, MOVED, plan } from '../src/plan.ts';

// A forged (or broken) GPU claim, end to end through the real state store, placement and the planner:
// the node that claimed a GPU fails the boot, the replica is healed on another GPU node, and the liar
// is never picked again for it. No VM boots here (no GPU on these machines): the failure is the one
// the VMM reports (VM_GPU_UNAVAILABLE, see packages/vmm/test/gpu.test.ts).

const gpu = (address: string): GpuDevice => ({
  address,
  vendor: '10de',
  device: '2204',
  iommuGroup: 1,
  driver: 'vfio-pci',
  passthrough: true,
});

function register(store: StateStore, k: KeyPair, i: number, gpus: GpuDevice[]): void {
  store.author(k, 'node.register', {
    capacity: { vcpu: 4, memMiB: 8192, diskGiB: 100 },
    endpoint: `127.0.0.1:${48000 + i}`,
    p2pPeerId: `12D3KooPeer${i}`,
    wgPublicKey: generateWireGuardKeyPair().publicKey,
    formnetRange: `10.129.${i}.0/24`,
  });
  const update = gpuRecordUpdate(undefined, gpus);
  if (update) store.author(k, 'node.update', update);
}

function planOn(store: StateStore, me: string, vm?: VmView): Action {
  const views = store.views();
  const now = Date.now();
  return plan({
    instance: views.instances[0]!,
    me,
    nodes: placementNodesFrom(views.nodes, now, 30_000, me),
    vm,
    now,
    retryAfterMs: 60_000,
    hasEntrypoint: false,
    canFetchRevisions: false,
  });
}

test('a GPU replica that fails to boot on the node that claimed the GPU is healed on another GPU node, and stays away', () => {
  const store = openStateStore({ path: ':memory:' });
  const [liar, honest, plain, owner] = [generateKeyPair(), generateKeyPair(), generateKeyPair(), generateKeyPair()];
  register(store, liar, 1, [gpu('0000:01:00.0')]);
  register(store, honest, 2, [gpu('0000:65:00.0')]);
  register(store, plain, 3, []);
  for (const k of [liar, honest, plain]) store.author(k, 'node.heartbeat', { status: 'healthy' });
  store.author(owner, 'instance.create', {
    formpackId: 'ab'.repeat(32),
    name: 'trainer',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
    gpu: { count: 1 },
  });
  const id = store.views().instances[0]!.id;
  const nodes = () => placementNodesFrom(store.views().nodes, Date.now(), 30_000);

  // The plain node never takes it; exactly one GPU node is placed first. Make the liar the first one
  // whatever the rendezvous order says: if the honest node comes first, swap roles.
  assert.deepEqual(planOn(store, plain.publicKey), { kind: 'nothing', why: 'not placed here' });
  const first = planOn(store, liar.publicKey).kind === 'claim' ? liar : honest;
  const second = first === liar ? honest : liar;
  assert.deepEqual(planOn(store, first.publicKey), { kind: 'claim' });
  assert.deepEqual(planOn(store, second.publicKey), { kind: 'nothing', why: 'not placed here' });

  // The first node claims, tries to boot, and its VMM cannot give the VM the GPU.
  store.author(first, 'instance.claim', { instanceId: id, node: first.publicKey });
  assert.deepEqual(planOn(store, first.publicKey), { kind: 'boot' });
  const reason = 'Cannot give VM vm-1 1 GPU: this host has no GPU';
  store.author(first, 'instance.status', {
    instanceId: id,
    node: first.publicKey,
    state: 'failed',
    revision: 0,
    reason,
  });
  assert.match(
    deploymentStatus(store.views().instances[0]!, nodes()).reason ?? '',
    /^healing on another GPU node: Cannot give VM/,
  );

  // Healing: the other GPU node is placed now; the failed one keeps its `failed` (no flapping back).
  assert.deepEqual(planOn(store, second.publicKey), { kind: 'claim' });
  assert.deepEqual(planOn(store, first.publicKey), { kind: 'nothing', why: 'not placed here' });
  store.author(second, 'instance.claim', { instanceId: id, node: second.publicKey });
  store.author(second, 'instance.status', {
    instanceId: id,
    node: second.publicKey,
    state: 'running',
    revision: 0,
    formnetIp: '10.129.2.2',
  });
  assert.deepEqual(deploymentStatus(store.views().instances[0]!, nodes()), {
    status: 'SUCCESS',
    running: 1,
    wanted: 1,
  });
  assert.deepEqual(planOn(store, first.publicKey), { kind: 'nothing', why: 'not placed here' });

  // A VM the failed node still holds goes, and the replica stays failed with its reason (not "stopped").
  const vm = { id: 'vm-1', state: 'crashed', source: { kind: 'formpack', id: 'ab'.repeat(32) } } as unknown as VmView;
  assert.deepEqual(planOn(store, first.publicKey, vm), { kind: 'remove', vmId: 'vm-1', report: 'failed', reason });
  store.close();
});

test('with no GPU node left, a GPU instance stays PENDING with the reason; a plain instance that failed moves as before', () => {
  const store = openStateStore({ path: ':memory:' });
  const [a, owner] = [generateKeyPair(), generateKeyPair()];
  register(store, a, 1, [
    { ...gpu('0000:01:00.0'), driver: 'nvidia', passthrough: false, reason: 'it is bound to nvidia, not vfio-pci' },
  ]);
  store.author(owner, 'instance.create', {
    formpackId: 'ab'.repeat(32),
    name: 'trainer',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
    gpu: { count: 1, vendor: 'nvidia' },
  });
  const s = deploymentStatus(
    store.views().instances[0]!,
    placementNodesFrom(store.views().nodes, Date.now(), 30_000, a.publicKey),
  );
  assert.equal(s.status, 'PENDING');
  assert.match(s.reason ?? '', /no healthy node has 1 nvidia GPU that can be passed through/);
  assert.deepEqual(planOn(store, a.publicKey), { kind: 'nothing', why: 'not placed here' });
  store.close();
  assert.equal(MOVED.startsWith('replica moved'), true);
});

test('gpuRecordUpdate: authored only when the GPUs changed (order does not matter); reasons are capped', () => {
  const g1 = gpu('0000:01:00.0');
  const g2 = gpu('0000:02:00.0');
  assert.equal(gpuRecordUpdate([g1, g2], [g2, g1]), null);
  assert.equal(gpuRecordUpdate(undefined, []), null);
  assert.deepEqual(gpuRecordUpdate([g1], [g1, g2]), { gpus: [g1, g2] });
  assert.deepEqual(gpuRecordUpdate([g1], []), { gpus: [] });
  const long = { ...g1, passthrough: false, reason: 'x'.repeat(400) };
  assert.equal(gpuRecordUpdate([], [long])?.gpus[0]?.reason?.length, 256);
});
