import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { openStateStore } from '../src/index.ts';
import { claimRunning, createInstance, lanNodeBody } from './helpers.ts';

test('instance.update desired: owner stops and starts; others are refused; bad values rejected', () => {
  const store = openStateStore({ path: ':memory:' });
  const owner = generateKeyPair();
  const other = generateKeyPair();
  const id = createInstance(store, owner, 'a'.repeat(64));
  assert.equal(store.views().instances[0]?.desired, 'running');
  store.author(owner, 'instance.update', { instanceId: id, desired: 'stopped' });
  assert.equal(store.views().instances[0]?.desired, 'stopped');
  assert.throws(
    () => store.author(other, 'instance.update', { instanceId: id, desired: 'running' }),
    (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_FORBIDDEN',
  );
  assert.equal(store.views().instances[0]?.desired, 'stopped', 'a refused op changes nothing');
  assert.throws(
    () => store.author(owner, 'instance.update', { instanceId: id, desired: 'paused' }),
    (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_INVALID',
  );
  store.author(owner, 'instance.update', { instanceId: id, desired: 'running' });
  assert.equal(store.views().instances[0]?.desired, 'running');
  store.close();
});

test('formnet.leave removes the peer from the view; a later formnet.peer rejoins it', () => {
  const store = openStateStore({ path: ':memory:' });
  const dev = generateKeyPair();
  const wg = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
  store.author(dev, 'formnet.peer', { wgPublicKey: wg, allowedIps: [] }, 1000);
  assert.equal(store.views().formnetPeers.length, 1);
  store.author(dev, 'formnet.leave', {}, 2000);
  assert.equal(store.views().formnetPeers.length, 0);
  assert.throws(
    () => store.author(dev, 'formnet.leave', { extra: 1 }, 2500),
    (e: unknown) => e instanceof FormError && e.code === 'STATE_OP_INVALID',
  );
  store.author(dev, 'formnet.peer', { wgPublicKey: wg, allowedIps: [] }, 3000);
  assert.equal(store.views().formnetPeers[0]?.publicKey, dev.publicKey);
  store.close();
});

test('DNS follows healing: a stand-in replica that runs is named when the first claim does not run', () => {
  const store = openStateStore({ path: ':memory:', domain: 'dev.formation.local' });
  const owner = generateKeyPair();
  const a = generateKeyPair();
  const b = generateKeyPair();
  store.author(a, 'node.register', lanNodeBody(0));
  store.author(b, 'node.register', lanNodeBody(1));
  const id = createInstance(store, owner, 'c'.repeat(64));
  claimRunning(store, a, id, '10.129.0.2');
  claimRunning(store, b, id, '10.129.1.2');
  const named = () => store.views().dns.find((d) => d.name === 'web.dev.formation.local')?.addresses;
  assert.deepEqual(named(), ['10.129.0.2'], 'one replica asked: the first claim only');
  store.author(a, 'instance.status', { instanceId: id, node: a.publicKey, state: 'stopped', revision: 0 });
  assert.deepEqual(named(), ['10.129.1.2'], 'the stand-in takes over the name');
  store.close();
});
