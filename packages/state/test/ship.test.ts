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

test("shipFormpack carries the Formfile's AUTOSTOP: set at create, form manage autostop overrides it, a release that says it sets it again", async () => {
  const store = openStateStore({ path: ':memory:' });
  const state = localStateClient(store);
  const dev = generateKeyPair();
  const withAutostop = (id: string, autostopMinutes?: number): FormpackManifest => {
    const m = manifest(id, dev.address);
    return autostopMinutes === undefined ? m : { ...m, formfile: { ...m.formfile, autostopMinutes } };
  };
  const autostop = () => store.views().instances.find((i) => !i.deleted)?.autostopMinutes;
  const { id } = await shipFormpack(state, dev, withAutostop('1', 10));
  assert.equal(autostop(), 10, 'the instance starts with the Formfile AUTOSTOP');
  // form manage autostop (the owner's instance.update) overrides it; shipping the same Formpack keeps the override.
  await state.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 0 });
  assert.equal((await shipFormpack(state, dev, withAutostop('1', 10))).updated, false);
  assert.equal(autostop(), 0, 'the override holds');
  // a new release whose Formfile says AUTOSTOP sets it; one without AUTOSTOP leaves it as it is
  await shipFormpack(state, dev, withAutostop('2', 5));
  assert.equal(autostop(), 5);
  await shipFormpack(state, dev, withAutostop('3'));
  assert.equal(autostop(), 5, 'no AUTOSTOP: unchanged');
  await shipFormpack(state, dev, withAutostop('4', 0));
  assert.equal(autostop(), 0, 'AUTOSTOP off: off');
  // a new instance without AUTOSTOP is off, and no extra op is written for it
  const ops = store.countOnDisk();
  await shipFormpack(state, dev, withAutostop('5'), { new: true });
  assert.equal(store.countOnDisk(), ops + 2, 'only its publish and the create');
  store.close();
});
