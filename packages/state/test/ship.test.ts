import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import type { FormpackManifest } from '@formation/interface';
import { localStateClient, openStateStore, shipFormpack } from '../src/index.ts';

const art = (sha: string) => ({ file: 'f', sha256: sha.repeat(64), bytes: 10 });
const manifest = (id: string, owner: string): FormpackManifest => ({
  id: id.repeat(64),
  name: 'web',
  owner,
  createdAt: '2026-01-01T00:00:00Z',
  formfile: {} as FormpackManifest['formfile'],
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  cmdline: 'console=ttyS0',
  init: '/sbin/form-init',
  artifacts: { disk: art('a'), kernel: art('b'), initramfs: art('c') },
  guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' },
});

test('shipFormpack: create, same again is a no-op, another replica count scales, a new Formpack updates', async () => {
  const store = openStateStore({ path: ':memory:' });
  const state = localStateClient(store);
  const dev = generateKeyPair();
  const first = await shipFormpack(state, dev, manifest('1', dev.address));
  assert.deepEqual([first.created, first.updated, first.replicas], [true, false, 1], 'no nodes: one replica');
  assert.equal(store.views().formpacks.length, 1);

  const again = await shipFormpack(state, dev, manifest('1', dev.address));
  assert.deepEqual([again.id, again.created, again.updated], [first.id, false, false]);
  const ops = store.countOnDisk();
  assert.equal((await shipFormpack(state, dev, manifest('1', dev.address), { replicas: 1 })).updated, false);
  assert.equal(store.countOnDisk(), ops, 'the same replica count writes nothing');

  const scaled = await shipFormpack(state, dev, manifest('1', dev.address), { replicas: 3 });
  assert.deepEqual([scaled.id, scaled.updated, scaled.replicas], [first.id, true, 3]);
  assert.equal(store.views().instances[0]?.replicas, 3);

  const changed = await shipFormpack(state, dev, manifest('2', dev.address));
  assert.deepEqual([changed.id, changed.updated, changed.replicas], [first.id, true, 3]);
  assert.equal(store.views().instances[0]?.formpackId, '2'.repeat(64));

  const fresh = await shipFormpack(state, dev, manifest('2', dev.address), { new: true, replicas: 2 });
  assert.notEqual(fresh.id, first.id);
  await assert.rejects(shipFormpack(state, dev, manifest('2', dev.address), { replicas: 17 }), /from 1 to 16/);
  store.close();
});
