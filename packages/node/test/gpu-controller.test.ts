import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { vmNameFor } from '@formation/scheduler';
import { createLogger } from '@formation/service';
import { type InstanceView, openStateStore, type StateStore } from '@formation/state';
import type { VmManager } from '@formation/vmm';
import { InstanceController } from '../src/controller.ts';
import { memoryVmManager } from './fixtures/memory-vmm.ts';

// A node that claims a GPU it does not have, with the real controller and VM manager (memory driver):
// the GPU instance placed on it fails to boot with the VMM's reason, is not retried here (placement
// skips the node for it), and an instance without GPU on the same node is not affected.

const logger = createLogger('silent');
const FP = 'c'.repeat(64);
let tmp: string;
let store: StateStore;
let vmm: VmManager;
let controller: InstanceController;
const node = generateKeyPair();
const dev = generateKeyPair();

function formpack(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const artifact = (file: string, content: string) => {
    writeFileSync(`${dir}/${file}`, content);
    return { file, sha256: createHash('sha256').update(content).digest('hex'), bytes: content.length };
  };
  const manifest = {
    id: FP,
    name: 'web',
    owner: dev.address,
    createdAt: '2026-01-01T00:00:00Z',
    resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
    cmdline: 'console=ttyS0',
    init: '/sbin/form-init',
    formfile: { expose: [], entrypoint: null },
    artifacts: {
      disk: artifact('disk.qcow2', 'disk'),
      kernel: artifact('vmlinuz', 'kernel'),
      initramfs: artifact('initramfs.img', 'initramfs'),
    },
    guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'dropbear' },
  };
  writeFileSync(`${dir}/manifest.json`, JSON.stringify(manifest));
}

const instance = (id: string): InstanceView => store.views().instances.find((i) => i.id === id) as InstanceView;
const mine = (id: string) => instance(id).replicaSet.find((r) => r.node === node.publicKey);
const vmOf = (id: string) => vmm.list().find((v) => v.name === vmNameFor(instance(id)));

before(async () => {
  tmp = mkdtempSync('/tmp/fdg-gpu-ctl-');
  // This host's sysfs as the VMM sees it: an empty tree, no GPU (deterministic whatever the machine has).
  mkdirSync(`${tmp}/sysroot`);
  process.env.FORM_GPU_ROOT = `${tmp}/sysroot`;
  formpack(`${tmp}/formpacks/${FP}`);
  store = openStateStore({ path: ':memory:' });
  store.author(node, 'node.register', {
    capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
    endpoint: '127.0.0.1:4005',
    p2pPeerId: '12D3KooPeer1',
    wgPublicKey: Buffer.alloc(32, 1).toString('base64'),
    formnetRange: '10.129.1.0/24',
  });
  // The forged claim: this node says it has a GPU ready for passthrough.
  store.author(node, 'node.update', {
    gpus: [
      { address: '0000:01:00.0', vendor: '10de', device: '2204', iommuGroup: 1, driver: 'vfio-pci', passthrough: true },
    ],
  });
  store.author(dev, 'formpack.publish', {
    id: FP,
    name: 'web',
    owner: dev.address,
    sha256s: { disk: createHash('sha256').update('disk').digest('hex') },
    size: 4,
  });
  vmm = await memoryVmManager(tmp, `${tmp}/formpacks`, tmp, logger);
  controller = new InstanceController({
    nodeKey: node,
    store,
    vmm,
    formpacksDir: `${tmp}/formpacks`,
    logger,
    intervalMs: 50,
    readyTimeoutMs: 5000,
  });
  controller.start();
});

after(async () => {
  await controller?.close();
  await vmm?.destroyAll();
  await vmm?.close({ stopVms: true });
  rmSync(tmp, { recursive: true, force: true });
  delete process.env.FORM_GPU_ROOT;
});

test('a forged GPU claim: the GPU instance fails to boot with the reason and stays failed; a plain one runs', async () => {
  const resources = { vcpu: 1, memMiB: 256, diskGiB: 1 };
  const id = store.author(dev, 'instance.create', {
    formpackId: FP,
    name: 'trainer',
    replicas: 1,
    resources,
    gpu: { count: 1 },
  }).body.id as string;
  await until('the GPU replica reported failed', () => mine(id)?.state === 'failed', 20_000);
  assert.match(mine(id)?.reason ?? '', /^Cannot give VM vm-[0-9a-f]+ 1 GPU: this host has no GPU/);
  assert.equal(vmOf(id), undefined, 'no VM was made for it');
  // Several rounds later: still failed, still no VM (no retry loop on a node placement now skips).
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(mine(id)?.state, 'failed');
  assert.equal(vmOf(id), undefined);

  const plain = store.author(dev, 'instance.create', { formpackId: FP, name: 'web', replicas: 1, resources }).body
    .id as string;
  await until('the plain replica running', () => mine(plain)?.state === 'running', 20_000);
  assert.ok(vmOf(plain));
});
