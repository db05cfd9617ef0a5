import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { generateKeyPair, keyPairFromPrivate } from '@formation/identity';
import { createSignedOp, OPS_TOPIC, peerIdOfKey, peerIdOfPublicKey } from '../src/index.ts';
import { startNode, type TestNode, waitFor } from './helpers.ts';

const running: TestNode[] = [];
after(async () => {
  await Promise.allSettled(running.map((n) => n.node.stop()));
});

async function start(...args: Parameters<typeof startNode>): Promise<TestNode> {
  const n = await startNode(...args);
  running.push(n);
  return n;
}

test('peer ID is derived deterministically from the node key', () => {
  const k = generateKeyPair();
  const again = keyPairFromPrivate(k.privateKey);
  assert.equal(peerIdOfKey(k).toString(), peerIdOfKey(again).toString());
  assert.equal(peerIdOfPublicKey(k.publicKey).toString(), peerIdOfKey(k).toString());
  assert.notEqual(peerIdOfKey(generateKeyPair()).toString(), peerIdOfKey(k).toString());
});

test('three nodes: an op written at node 1 reaches all; a stopped node catches up after restart', async () => {
  const n1 = await start();
  const boot = n1.node.multiaddrs();
  const n2 = await start({ bootstrap: boot });
  const n3 = await start({ bootstrap: boot });
  assert.equal(n2.node.peers().includes(n1.node.peerId), true);
  await waitFor(() => n1.node.topicPeers().length === 2, 5_000, 'both peers subscribed at node 1');

  const op = n1.store.append(n1.key, { kind: 'hello', n: 1 });
  await waitFor(() => n2.store.has(op.hash) && n3.store.has(op.hash), 5_000, 'op at nodes 2 and 3');
  assert.ok(n2.node.stats.gossipAccepted + n2.node.stats.syncAccepted >= 1);

  // Stop node 3 (keeping its store = its data dir), write while it is down, restart it.
  const key3 = n3.key;
  const store3 = n3.store;
  await n3.node.stop();
  running.splice(running.indexOf(n3), 1);
  const missed = [
    n1.store.append(n1.key, { n: 2 }),
    n2.store.append(n2.key, { n: 3 }),
    n1.store.append(n1.key, { n: 4 }),
  ];
  await waitFor(() => missed.every((o) => n2.store.has(o.hash) && n1.store.has(o.hash)), 5_000, 'ops at nodes 1, 2');
  assert.equal(
    missed.some((o) => store3.has(o.hash)),
    false,
    'node 3 is down and cannot have them yet',
  );

  const n3b = await start({ key: key3, store: store3, bootstrap: boot });
  assert.equal(n3b.node.peerId, n3.node.peerId, 'same key, same peer ID');
  await waitFor(() => missed.every((o) => store3.has(o.hash)), 10_000, 'node 3 catching up');
  await waitFor(
    () => n1.store.digest() === n2.store.digest() && n2.store.digest() === store3.digest(),
    5_000,
    'digests converging',
  );
  assert.equal(store3.size(), 4);
});

test('anti-entropy loops until caught up across many batches', async () => {
  const a = await start({ syncBatch: 7, syncIntervalMs: 0 });
  const key = generateKeyPair();
  for (let i = 0; i < 100; i++) a.store.append(key, { i });
  // b has diverged: an op of its own that a never saw.
  const b = await start({ syncIntervalMs: 0 });
  b.store.append(key, { mine: true });
  await b.node.dial(a.node.multiaddrs()[0] as string);
  const r = await b.node.syncWith(a.node.peerId);
  assert.equal(r.accepted, 100);
  assert.ok(r.rounds >= 15, `needed ${r.rounds} rounds for 100 ops in batches of 7`);
  assert.equal(b.store.size(), 101);
  await waitFor(() => a.store.size() === 101, 5_000, 'a pulling b’s op (sync on connect)');
});

test('a forged op is neither stored nor forwarded; a valid op from the same peer is', async () => {
  // Line: attacker -- n1 -- n2, so n2 can only get gossip that n1 forwards.
  const n1 = await start({ syncIntervalMs: 0 });
  const n2 = await start({ bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
  const bad = await start({ bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
  await waitFor(() => n1.node.topicPeers().length === 2, 5_000, 'n1 sees both subscribers');
  await waitFor(() => n2.node.topicPeers().length === 1 && bad.node.topicPeers().length === 1, 5_000, 'mesh');
  await new Promise((r) => setTimeout(r, 1_500)); // a gossipsub heartbeat builds the mesh

  const victim = generateKeyPair();
  const real = createSignedOp(victim, { transfer: 1 }, []);
  const forged = { ...real, body: { transfer: 1_000_000 } }; // same hash and signature, other content
  const forgedSig = { ...createSignedOp(bad.key, { x: 1 }, []), author: victim.publicKey }; // wrong signer
  const pubsub = bad.node.libp2p.services.pubsub;
  for (const f of [forged, forgedSig]) await pubsub.publish(OPS_TOPIC, new TextEncoder().encode(JSON.stringify(f)));
  await waitFor(() => n1.node.stats.gossipRejected === 2, 5_000, 'n1 rejecting both forgeries');
  assert.equal(n1.store.has(forged.hash), false);
  assert.equal(n1.store.has(forgedSig.hash), false);

  // Positive control: a valid op from the attacker goes through n1 to n2.
  const good = bad.store.append(bad.key, { honest: true });
  await waitFor(() => n2.store.has(good.hash), 5_000, 'valid op forwarded to n2');
  assert.equal(n2.node.stats.gossipAccepted, 1, 'n2 received exactly the forwarded valid op');
  assert.equal(n2.node.stats.gossipRejected, 0, 'no forgery was forwarded to n2');
  assert.equal(n2.store.size(), 1);
  // Sync never carries rejected ops either.
  await n2.node.syncWith(n1.node.peerId);
  assert.equal(n2.store.has(forged.hash) || n2.store.has(forgedSig.hash), false);
});

test('malformed gossip is rejected', async () => {
  const n1 = await start({ syncIntervalMs: 0 });
  const bad = await start({ bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
  await waitFor(() => bad.node.topicPeers().length === 1, 5_000, 'subscription');
  const pubsub = bad.node.libp2p.services.pubsub;
  await pubsub.publish(OPS_TOPIC, new TextEncoder().encode('not json'));
  await pubsub.publish(OPS_TOPIC, new TextEncoder().encode('{"nohash":1}'));
  await pubsub.publish(OPS_TOPIC, new Uint8Array(300 * 1024).fill(65)); // over maxOpBytes
  await waitFor(() => n1.node.stats.gossipRejected >= 2, 5_000, 'rejections');
  assert.equal(n1.store.size(), 0);
});
