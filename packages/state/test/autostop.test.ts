import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { openStateStore } from '../src/index.ts';
import { claimRunning, createInstance, lanNodeBody } from './helpers.ts';

test('instance.update autostopMinutes (scale to zero): the owner sets and clears it; another key is refused', () => {
  const store = openStateStore({ path: ':memory:' });
  const owner = generateKeyPair();
  const other = generateKeyPair();
  const id = createInstance(store, owner, 'a'.repeat(64));
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
  const id = createInstance(store, owner, 'b'.repeat(64));
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
  store.author(node, 'node.register', lanNodeBody(0));
  const id = createInstance(store, owner, 'c'.repeat(64));
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
