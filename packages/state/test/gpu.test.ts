import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { instanceBody, key, memStore, nodeBody } from './helpers.ts';

const GPU = {
  address: '0000:01:00.0',
  vendor: '10de',
  device: '2204',
  iommuGroup: 12,
  driver: 'vfio-pci',
  passthrough: true,
};
const invalid = (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_INVALID';

test('node.register/update carry the GPUs a node reports; the node view shows them (LWW)', () => {
  const store = memStore();
  const node = key(1);
  store.author(node, 'node.register', { ...nodeBody(1), gpus: [GPU] }, 1000);
  assert.deepEqual(store.views().nodes[0]?.gpus, [GPU]);
  store.author(node, 'node.update', { gpus: [] }, 2000);
  assert.deepEqual(store.views().nodes[0]?.gpus, []);
  store.close();
});

test('a node record without gpus shows none', () => {
  const store = memStore();
  store.author(key(1), 'node.register', nodeBody(1));
  assert.deepEqual(store.views().nodes[0]?.gpus, []);
  store.close();
});

test('bad GPU reports are refused and change nothing: a comma in the PCI address, unknown fields, too many', () => {
  const store = memStore();
  const node = key(1);
  store.author(node, 'node.register', { ...nodeBody(1), gpus: [GPU] }, 1000);
  for (const gpus of [
    // A comma would smuggle QEMU options into `vfio-pci,host=<address>`.
    [{ ...GPU, address: '0000:01:00.0,romfile=/etc/shadow' }],
    [{ ...GPU, vendor: 'NVIDIA' }],
    [{ ...GPU, extra: true }],
    Array.from({ length: 17 }, () => GPU),
  ]) {
    assert.throws(() => store.author(node, 'node.update', { gpus }, 2000), invalid);
  }
  assert.deepEqual(store.views().nodes[0]?.gpus, [GPU]);
  store.close();
});

test('instance.create/update carry the GPU request; null removes it; bad requests are refused', () => {
  const store = memStore();
  const owner = key(9);
  const create = store.author(
    owner,
    'instance.create',
    { ...instanceBody(), gpu: { count: 1, vendor: 'nvidia' } },
    1000,
  );
  const id = create.body.id as string;
  assert.deepEqual(store.views().instances[0]?.gpu, { count: 1, vendor: 'nvidia' });
  for (const gpu of [{ count: 0 }, { count: 17 }, { count: 1, vendor: 'NV IDIA' }, { count: 1, kind: 'a100' }]) {
    assert.throws(() => store.author(owner, 'instance.update', { instanceId: id, gpu }, 2000), invalid);
  }
  assert.deepEqual(store.views().instances[0]?.gpu, { count: 1, vendor: 'nvidia' });
  store.author(owner, 'instance.update', { instanceId: id, gpu: null }, 3000);
  assert.equal(store.views().instances[0]?.gpu, null);
  store.author(owner, 'instance.create', instanceBody('plain'), 1000);
  assert.equal(store.views().instances.find((i) => i.name === 'plain')?.gpu, null);
  store.close();
});
