import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { openStateStore } from '../src/index.ts';
import { claimRunning } from './helpers.ts';

test('instance.update autostopMinutes (scale to zero): the owner sets and clears it; another key is refused', () => {
  const store = openStateStore({ path: ':memory:' });
  const owner = generateKeyPair();
  const other = generateKeyPair();
  const create = store.author(owner, 'instance.create', {
    formpackId: 'a'.repeat(64),
    name: 'web',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  });
  const id = create.body.id as string;
  const autostop = () => store.views().instances[0]?.autostopMinutes;
  assert.equal(autostop(), 0, 'off unless asked');
  store.author(owner, 'instance.update', { instanceId: id, autostopMinutes: 15 });
  assert.equal(autostop(), 15);
  assert.throws(
    () => store.author(other, 'instance.update', { instanceId: id, autostopMinutes: 0 }),
    (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_FORBIDDEN',
  );
  assert.equal(autostop(), 15, 'a refused op changes nothing');
  for (const bad of [-1, 10_081, '5', null]) {
    assert.throws(
      () => store.author(owner, 'instance.update', { instanceId: id, autostopMinutes: bad }),
      (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_INVALID',
      String(bad),
    );
  }
  store.author(owner, 'instance.update', { instanceId: id, autostopMinutes: 0 });
  assert.equal(autostop(), 0);
  store.close();
});

test('instance.status takes suspended (and back to running); an unknown state is refused', () => {
  const store = openStateStore({ path: ':memory:' });
  const owner = generateKeyPair();
  const create = store.author(owner, 'instance.create', {
    formpackId: 'b'.repeat(64),
    name: 'web',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  });
  const id = create.body.id as string;
  const node = generateKeyPair();
  const status = (state: string) =>
    store.author(node, 'instance.status', { instanceId: id, node: node.publicKey, state, revision: 0 });
  status('running');
  status('suspended');
  status('running');
  assert.equal(store.views().instances[0]?.replicaSet.length ?? 0, 0, 'unclaimed: no replica in the view');
  assert.throws(
    () => status('sleeping'),
    (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_INVALID',
  );
  store.close();
});

test('a suspended replica keeps its DNS name (its next connection wakes it); a stopped one loses it', () => {
  const store = openStateStore({ path: ':memory:', domain: 'dev.formation.local' });
  const owner = generateKeyPair();
  const node = generateKeyPair();
  store.author(node, 'node.register', {
    capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
    endpoint: '192.168.77.2:3005',
    p2pPeerId: 'peer0',
    wgPublicKey: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    formnetRange: '10.129.0.0/24',
  });
  const id = store.author(owner, 'instance.create', {
    formpackId: 'c'.repeat(64),
    name: 'web',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  }).body.id as string;
  claimRunning(store, node, id, '10.129.0.2');
  const named = () => store.views().dns.find((d) => d.name === 'web.dev.formation.local')?.addresses;
  assert.deepEqual(named(), ['10.129.0.2']);
  const report = (state: string) =>
    store.author(node, 'instance.status', {
      instanceId: id,
      node: node.publicKey,
      state,
      formnetIp: '10.129.0.2',
      revision: 0,
    });
  report('suspended');
  assert.deepEqual(named(), ['10.129.0.2'], 'suspended: still answered');
  report('stopped');
  assert.deepEqual(named(), [], 'stopped: not answered');
  store.close();
});
