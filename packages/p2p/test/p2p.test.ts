import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateKeyPair, keyPairFromPrivate } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { OPS_TOPIC, peerIdOfKey, peerIdOfPublicKey } from '../src/index.ts';
import { HARNESSES, type StoreHarness, startNode, trackNodes } from './helpers.ts';

const { start, stop } = trackNodes();

test('peer ID is derived deterministically from the node key', () => {
  const k = generateKeyPair();
  const again = keyPairFromPrivate(k.privateKey);
  assert.equal(peerIdOfKey(k).toString(), peerIdOfKey(again).toString());
  assert.equal(peerIdOfPublicKey(k.publicKey).toString(), peerIdOfKey(k).toString());
  assert.notEqual(peerIdOfKey(generateKeyPair()).toString(), peerIdOfKey(k).toString());
});

for (const [storeName, makeHarness] of Object.entries(HARNESSES)) {
  describe(`with the ${storeName} store`, () => {
    const mk = (): StoreHarness => makeHarness();

    test('three nodes: an op written at node 1 reaches all; a stopped node catches up after restart', async () => {
      const n1 = await start({ h: mk() });
      const boot = n1.node.multiaddrs();
      const n2 = await start({ h: mk(), bootstrap: boot });
      const n3 = await start({ h: mk(), bootstrap: boot });
      assert.equal(n2.node.peers().includes(n1.node.peerId), true);
      await until('both peers subscribed at node 1', () => n1.node.topicPeers().length === 2, 5_000);

      const op = n1.h.append(n1.key, 'hello');
      await until('op at nodes 2 and 3', () => n2.h.has(op.hash) && n3.h.has(op.hash), 5_000);

      // Stop node 3, write while it is down, restart it from its (reopened) store.
      await stop(n3);
      const missed = [n1.h.append(n1.key, 'two'), n2.h.append(n2.key, 'three'), n1.h.append(n1.key, 'four')];
      await until('ops at nodes 1, 2', () => missed.every((o) => n2.h.has(o.hash) && n1.h.has(o.hash)), 5_000);
      assert.equal(
        missed.some((o) => n3.h.has(o.hash)),
        false,
        'node 3 is down and cannot have them yet',
      );

      const n3b = await start({ key: n3.key, h: n3.h.reopen(), bootstrap: boot });
      assert.equal(n3b.node.peerId, n3.node.peerId, 'same key, same peer ID');
      await until('node 3 catching up', () => missed.every((o) => n3b.h.has(o.hash)), 10_000);
      await until(
        'digests converging',
        () => n1.h.digest() === n2.h.digest() && n2.h.digest() === n3b.h.digest(),
        5_000,
      );
      assert.equal(n3b.h.size(), 4);
    });

    test('anti-entropy loops until caught up across many batches, both ways', async () => {
      const a = await start({ h: mk(), syncBatch: 7, syncIntervalMs: 0 });
      const key = generateKeyPair();
      for (let i = 0; i < 100; i++) a.h.append(key, `op ${i}`);
      // b has diverged: an op of its own that a never saw.
      const b = await start({ h: mk(), syncIntervalMs: 0 });
      b.h.append(generateKeyPair(), 'mine');
      await b.node.dial(a.node.multiaddrs()[0] as string);
      const r = await b.node.syncWith(a.node.peerId);
      assert.equal(r.accepted, 100);
      assert.ok(r.rounds >= 15, `needed ${r.rounds} rounds for 100 ops in batches of 7`);
      assert.equal(b.h.size(), 101);
      await until('a pulling b’s op (sync on connect)', () => a.h.size() === 101, 5_000);
      assert.equal(a.h.digest(), b.h.digest());
    });

    test('a partition heals: both sides converge to the same digest', async () => {
      // Two halves that never met: {a, b} and {c, d}; each side writes, then one link joins them.
      const a = await start({ h: mk() });
      const b = await start({ h: mk(), bootstrap: a.node.multiaddrs() });
      const c = await start({ h: mk() });
      const d = await start({ h: mk(), bootstrap: c.node.multiaddrs() });
      const all = [a, b, c, d];
      for (let i = 0; i < 5; i++) {
        a.h.append(a.key, `left ${i}`);
        d.h.append(d.key, `right ${i}`);
      }
      await until('each side converging internally', () => b.h.size() === 5 && c.h.size() === 5, 5_000);
      assert.notEqual(a.h.digest(), c.h.digest());
      await c.node.dial(a.node.multiaddrs()[0] as string);
      await until('all four holding all ten ops', () => all.every((n) => n.h.size() === 10), 10_000);
      assert.equal(new Set(all.map((n) => n.h.digest())).size, 1);
    });

    test('an op with missing parents triggers anti-entropy with the sender', async () => {
      // n1 holds a parent it never gossiped (as if that gossip had been lost); no sync on connect.
      const key = generateKeyPair();
      const h1 = mk();
      const parent = h1.append(key, 'lost parent');
      const quiet = { syncIntervalMs: 0, syncOnConnect: false };
      const n1 = await start({ h: h1, ...quiet });
      const n2 = await start({ h: mk(), bootstrap: n1.node.multiaddrs(), ...quiet });
      await until('mesh', () => n2.node.topicPeers().length === 1 && n1.node.topicPeers().length === 1, 5_000);
      assert.equal(n2.h.has(parent.hash), false);
      const child = n1.h.append(key, 'child'); // gossiped; n2 lacks its parent
      await until('n2 fetching the missing parent', () => n2.h.has(child.hash) && n2.h.has(parent.hash), 5_000);
      // the run is counted once its stream has closed, just after the ops are applied
      await until('the anti-entropy run to finish', () => n2.node.stats.syncs >= 1, 2_000);
      assert.equal(n2.node.stats.syncs, 1, 'one anti-entropy run, triggered by the pending op');
    });

    test('a forged op is neither stored nor forwarded; a valid op from the same peer is', async () => {
      // Line: attacker -- n1 -- n2, so n2 can only get gossip that n1 forwards.
      const n1 = await start({ h: mk(), syncIntervalMs: 0 });
      const n2 = await start({ h: mk(), bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
      const bad = await start({ h: mk(), bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
      await until('n1 sees both subscribers', () => n1.node.topicPeers().length === 2, 5_000);
      await until(
        'subscriptions',
        () => n2.node.topicPeers().length === 1 && bad.node.topicPeers().length === 1,
        5_000,
      );
      await new Promise((r) => setTimeout(r, 1_500)); // a gossipsub heartbeat builds the mesh

      const victim = generateKeyPair();
      const real = bad.h.make(victim, 'transfer 1', []);
      const tampered = { ...real, ts: 1, body: { tag: 'transfer 1000000', name: 'transfer 1000000' } }; // hash/sig no longer match
      const forgedSig = bad.h.forgeSignature(victim, bad.key, 'I am the victim');
      const pubsub = bad.node.libp2p.services.pubsub;
      for (const f of [tampered, forgedSig]) {
        await pubsub.publish(OPS_TOPIC, new TextEncoder().encode(JSON.stringify(f)));
      }
      await until('n1 rejecting both forgeries', () => n1.node.stats.gossipRejected === 2, 5_000);
      assert.equal(n1.h.size(), 0);

      // Positive control: a valid op from the attacker goes through n1 to n2.
      const good = bad.h.append(bad.key, 'honest');
      await until('valid op forwarded to n2', () => n2.h.has(good.hash), 5_000);
      assert.equal(n2.node.stats.gossipAccepted, 1, 'n2 received exactly the forwarded valid op');
      assert.equal(n2.node.stats.gossipRejected, 0, 'no forgery was forwarded to n2');
      assert.equal(n2.h.size(), 1);
      // Sync never carries rejected ops either.
      await n2.node.syncWith(n1.node.peerId);
      assert.equal(n2.h.has(forgedSig.hash), false);
      assert.equal(n2.h.size(), 1);
    });

    test('malformed gossip is rejected', async () => {
      const n1 = await start({ h: mk(), syncIntervalMs: 0 });
      const bad = await start({ h: mk(), bootstrap: n1.node.multiaddrs(), syncIntervalMs: 0 });
      await until('subscription', () => bad.node.topicPeers().length === 1, 5_000);
      const pubsub = bad.node.libp2p.services.pubsub;
      await pubsub.publish(OPS_TOPIC, new TextEncoder().encode('not json'));
      await pubsub.publish(OPS_TOPIC, new TextEncoder().encode('{"nohash":1}'));
      await pubsub.publish(OPS_TOPIC, new Uint8Array(300 * 1024).fill(65)); // over maxOpBytes
      await until('rejections', () => n1.node.stats.gossipRejected >= 2, 5_000);
      assert.equal(n1.h.size(), 0);
    });
  });
}

test('channels: a broadcast reaches peers that accept it; what a validator rejects is not forwarded', async () => {
  const topic = 'formation/test-channel/1';
  // Every message a node's validator sees, accepted or not.
  const seen: Record<string, string[]> = { a: [], b: [], c: [] };
  const channel = (name: string) => ({
    topic,
    validate: (data: Uint8Array) => {
      const text = new TextDecoder().decode(data);
      seen[name]?.push(text);
      return text.startsWith('bad') ? ('reject' as const) : ('accept' as const);
    },
  });
  const mk = HARNESSES.memory as () => StoreHarness;
  const a = await startNode({ h: mk(), channels: [channel('a')] });
  const b = await startNode({ h: mk(), channels: [channel('b')], bootstrap: a.node.multiaddrs() });
  const c = await startNode({ h: mk(), channels: [channel('c')], bootstrap: b.node.multiaddrs() });
  try {
    assert.equal(c.node.peers().includes(a.node.peerId), false, 'c hears a only through b');
    await until(
      'channel subscriptions',
      () =>
        a.node.libp2p.services.pubsub.getSubscribers(topic).length >= 1 &&
        c.node.libp2p.services.pubsub.getSubscribers(topic).length >= 1,
      5_000,
    );
    await a.node.broadcast(topic, new TextEncoder().encode('hello 1'));
    await until(
      'hello at b and c',
      () => seen.b?.includes('hello 1') === true && seen.c?.includes('hello 1') === true,
      5_000,
    );
    await a.node.broadcast(topic, new TextEncoder().encode('bad 2'));
    await a.node.broadcast(topic, new TextEncoder().encode('hello 3'));
    await until('hello 3 at c', () => seen.c?.includes('hello 3') === true, 5_000);
    assert.deepEqual(seen.b, ['hello 1', 'bad 2', 'hello 3'], 'b saw all three');
    assert.deepEqual(seen.c, ['hello 1', 'hello 3'], 'b did not forward what it rejected');
    assert.deepEqual(seen.a, [], 'a does not see its own broadcasts');
    await assert.rejects(a.node.broadcast('formation/other/1', new Uint8Array(1)), /not a configured channel/);
  } finally {
    await Promise.all([a, b, c].map((n) => n.node.stop()));
  }
});
