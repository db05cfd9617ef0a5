import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { until } from '@formation/interface/testing';
import { type ControllerNode, startControllerNode } from './fixtures/controller-node.ts';

// A node that claims a GPU it does not have, with the real controller and VM manager (memory driver):
// the GPU instance placed on it fails to boot with the VMM's reason, is not retried here (placement
// skips the node for it), and an instance without GPU on the same node is not affected.

let n: ControllerNode;

before(async () => {
  n = await startControllerNode({
    tmpPrefix: '/tmp/fdg-gpu-ctl-',
    afterRegister: ({ tmp, store, node }) => {
      // This host's sysfs as the VMM sees it: an empty tree, no GPU (deterministic whatever the machine has).
      mkdirSync(`${tmp}/sysroot`);
      process.env.FORM_GPU_ROOT = `${tmp}/sysroot`;
      // The forged claim: this node says it has a GPU ready for passthrough.
      store.author(node, 'node.update', {
        gpus: [
          {
            address: '0000:01:00.0',
            vendor: '10de',
            device: '2204',
            iommuGroup: 1,
            driver: 'vfio-pci',
            passthrough: true,
          },
        ],
      });
    },
  });
});

after(async () => {
  await n?.close();
  delete process.env.FORM_GPU_ROOT;
});

test('a forged GPU claim: the GPU instance fails to boot with the reason and stays failed; a plain one runs', async () => {
  const { mine, vmOf } = n;
  const resources = { vcpu: 1, memMiB: 256, diskGiB: 1 };
  const id = n.createInstance('trainer', { resources, gpu: { count: 1 } });
  await until('the GPU replica reported failed', () => mine(id)?.state === 'failed', 20_000);
  assert.match(mine(id)?.reason ?? '', /^Cannot give VM vm-[0-9a-f]+ 1 GPU: this host has no GPU/);
  assert.equal(vmOf(id), undefined, 'no VM was made for it');
  // Several rounds later: still failed, still no VM (no retry loop on a node placement now skips).
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(mine(id)?.state, 'failed');
  assert.equal(vmOf(id), undefined);

  const plain = n.createInstance('web', { resources });
  await until('the plain replica running', () => mine(plain)?.state === 'running', 20_000);
  assert.ok(vmOf(plain));
});
