import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { openStateStore, PresenceBook, presenceProblem, signPresence } from '../src/index.ts';
import { nodeBody } from './helpers.ts';

test('presence: signed by the node, fresh, newest wins; forged, skewed and malformed are refused', () => {
  const node = generateKeyPair();
  const other = generateKeyPair();
  const now = Date.now();
  const book = new PresenceBook();
  const p1 = signPresence(node, 'healthy', undefined, now - 1000);
  assert.equal(book.record(p1, now), 'accepted');
  assert.equal(book.record(p1, now), 'stale', 'the same message again is not news');
  assert.equal(book.record(signPresence(node, 'healthy', undefined, now - 2000), now), 'stale');
  const p2 = signPresence(node, 'draining', { vcpu: 1, memMiB: 512, diskGiB: 5 }, now);
  assert.equal(book.record(p2, now), 'accepted');
  assert.equal(book.get(node.publicKey)?.status, 'draining');

  const forged = { ...signPresence(other, 'healthy', undefined, now + 1), node: node.publicKey };
  assert.deepEqual(book.record(forged, now), { problem: 'signature does not verify for the node' });
  const tampered = { ...signPresence(node, 'healthy', undefined, now + 5), status: 'draining' };
  assert.match(String(presenceProblem(tampered, now)), /signature/);
  assert.match(String(presenceProblem(signPresence(node, 'healthy', undefined, now + 120_000), now)), /too far/);
  assert.match(String(presenceProblem(signPresence(node, 'healthy', undefined, now - 120_000), now)), /too far/);
  assert.match(String(presenceProblem({ ...p1, extra: 1 }, now)), /exactly/);
  assert.match(String(presenceProblem({ ...p1, status: 'asleep' }, now)), /status/);
  assert.match(String(presenceProblem({ ...p1, used: { vcpu: -1, memMiB: 0, diskGiB: 0 } }, now)), /used/);
  assert.match(String(presenceProblem(null, now)), /not an object/);
  assert.equal(book.get(node.publicKey)?.ts, now, 'nothing refused replaced the newest');
});

test('presence is laid over the views, never enters the log or the digest', () => {
  const store = openStateStore({ path: ':memory:' });
  const node = generateKeyPair();
  store.author(node, 'node.register', nodeBody(1));
  store.author(node, 'node.heartbeat', { status: 'healthy' }, 1000);
  const digest = store.digest();
  const ops = store.countOnDisk();
  assert.equal(store.views().nodes[0]?.heartbeat?.ts, 1000);
  const now = Date.now();
  assert.equal(store.presence.record(signPresence(node, 'healthy', undefined, now)), 'accepted');
  assert.equal(store.views().nodes[0]?.heartbeat?.ts, now, 'the newer presence shows as the heartbeat');
  assert.equal(store.digest(), digest);
  assert.equal(store.countOnDisk(), ops);
  // A newer durable heartbeat op wins over an older presence.
  store.author(node, 'node.heartbeat', { status: 'draining' }, now + 10);
  assert.equal(store.views().nodes[0]?.heartbeat?.status, 'draining');
  store.close();
});
