// A rolling update and an automatic rollback carried out by two real InstanceControllers (two node
// keys, each with its own VM manager on the memory driver) over one real state store: no root, no
// QEMU. What is checked is the order of the signed reports: the second replica starts its replacement
// only after the first runs the new release; a release whose Formpack cannot be had fails on its first
// replica and the nodes go back by themselves, the other replica never leaving the good release.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { generateKeyPair, type KeyPair } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { type InstanceView, type Op, openStateStore, type StateStore } from '@formation/state';
import type { VmManager } from '@formation/vmm';
import { memoryFormpack, memoryVmManager } from '@formation/vmm/memory';
import { InstanceController } from '../src/controller.ts';

const logger = createLogger('silent');
const dev = generateKeyPair();
const R = { vcpu: 1, memMiB: 256, diskGiB: 1 };
let tmp: string;
let store: StateStore;
const nodes: Array<{ key: KeyPair; vmm: VmManager; ctl: InstanceController }> = [];
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A Formpack (memory-driver artifacts) in `root`, published by the developer; returns its id. */
function formpack(root: string, tag: string, publish = true): string {
  const id = memoryFormpack(root, { id: sha(`formpack-${tag}`), owner: dev.address, expose: [], disk: `disk-${tag}` });
  if (publish)
    store.author(dev, 'formpack.publish', {
      id,
      name: 'web',
      owner: dev.address,
      sha256s: { disk: sha(`disk-${tag}`) },
      size: 4,
    });
  return id;
}

const reports: Op[] = [];
let fp1 = '';
let fp2 = '';
const FP_MISSING = sha('formpack-nowhere');

before(async () => {
  tmp = mkdtempSync('/tmp/fnode-roll-');
  store = openStateStore({ path: ':memory:' });
  store.onAccepted((op) => {
    if (op.kind === 'instance.status') reports.push(op);
  });
  for (const i of [1, 2]) {
    const key = generateKeyPair();
    store.author(key, 'node.register', {
      capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
      endpoint: `127.0.0.1:${4100 + i}`,
      p2pPeerId: `12D3KooRoll${i}`,
      wgPublicKey: Buffer.alloc(32, i).toString('base64'),
      formnetRange: `10.129.${i}.0/24`,
    });
    store.author(key, 'node.heartbeat', { status: 'healthy' });
    // Every node has both Formpacks on disk (the missing one is on none).
    fp1 = formpack(`${tmp}/n${i}/formpacks`, 'v1', i === 1);
    fp2 = formpack(`${tmp}/n${i}/formpacks`, 'v2', i === 1);
    const vmm = await memoryVmManager(`${tmp}/n${i}`, `${tmp}/n${i}/formpacks`, tmp, logger);
    const ctl = new InstanceController({
      nodeKey: key,
      store,
      vmm,
      formpacksDir: `${tmp}/n${i}/formpacks`,
      logger,
      intervalMs: 50,
      readyTimeoutMs: 5000,
      retryAfterMs: 60_000,
      nodeTimeoutMs: 600_000,
      drainMs: 0,
    });
    nodes.push({ key, vmm, ctl });
  }
  store.author(dev, 'formpack.publish', {
    id: FP_MISSING,
    name: 'web',
    owner: dev.address,
    sha256s: { disk: sha('disk-nowhere') },
    size: 4,
  });
  for (const n of nodes) n.ctl.start();
});

after(async () => {
  for (const n of nodes) {
    await n.ctl.close();
    await n.vmm.destroyAll();
    await n.vmm.close({ stopVms: true });
  }
  rmSync(tmp, { recursive: true, force: true });
});

const inst = (id: string) => store.views().instances.find((i) => i.id === id) as InstanceView;
const onRelease = (id: string, release: number) =>
  inst(id).replicaSet.filter((r) => r.assigned && r.state === 'running' && r.release === release).length;
/** The first report by `node` matching `pred`, in the order the store accepted them. */
const firstIndex = (node: string, pred: (b: Record<string, unknown>) => boolean, from = 0) =>
  reports.findIndex((op, i) => i >= from && op.author === node && pred(op.body));

test('a new Formpack replaces one replica at a time; a release that fails rolls back by itself', async () => {
  const id = store.author(dev, 'instance.create', { formpackId: fp1, name: 'web', replicas: 2, resources: R }).body
    .id as string;
  await until('both replicas run release 1', () => onRelease(id, 1) === 2 || undefined, 20_000, 25);

  // Release 2: one at a time.
  const mark = reports.length;
  store.author(dev, 'instance.update', { instanceId: id, formpackId: fp2, resources: R, release: 2 });
  await until('both replicas run release 2', () => onRelease(id, 2) === 2 || undefined, 20_000, 25);
  const starts = nodes.map((n) => firstIndex(n.key.publicKey, (b) => b.state === 'starting', mark));
  const [first, second] = [...nodes].sort((a, b) => starts[nodes.indexOf(a)]! - starts[nodes.indexOf(b)]!);
  const firstRunning = firstIndex(first!.key.publicKey, (b) => b.state === 'running' && b.release === 2, mark);
  const secondStarting = firstIndex(second!.key.publicKey, (b) => b.state === 'starting', mark);
  assert.ok(firstRunning >= 0 && secondStarting > firstRunning, 'the second went only once the first ran release 2');
  assert.equal(inst(id).releases?.[1]?.result, 'current');

  // Release 3 names a Formpack no node has: its first replica fails, the nodes go back to release 2.
  const mark3 = reports.length;
  store.author(dev, 'instance.update', { instanceId: id, formpackId: FP_MISSING, resources: R, release: 3 });
  await until(
    'release 3 rolled back, both replicas on release 2',
    () => (inst(id).releases?.[2]?.result === 'rolled-back' && onRelease(id, 2) === 2) || undefined,
    20_000,
    25,
  );
  assert.equal(inst(id).release, 2);
  assert.equal(inst(id).formpackId, fp2);
  assert.match(inst(id).releases?.[2]?.failure ?? '', /not on this node/);
  // Exactly one node tried release 3; the other never left release 2 (never reported starting).
  const tried = nodes.filter((n) => firstIndex(n.key.publicKey, (b) => b.state === 'starting', mark3) >= 0);
  assert.equal(tried.length, 1, 'one replica at a time, and the failure stopped the roll-out');
});
