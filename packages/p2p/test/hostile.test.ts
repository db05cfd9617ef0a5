import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, sha256Hex, sign } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { encodeOp } from '@formation/state';
import {
  type ApplyResult,
  createSignedOp,
  GRAYLIST_THRESHOLD,
  OPS_TOPIC,
  type Op,
  type OpStore,
  SYNC_PROTOCOL,
} from '../src/index.ts';
import { openFrames } from '../src/sync-protocol.ts';
import { HARNESSES, trackNodes } from './helpers.ts';

// Issue 16 ("Replay and floods"): gossipsub had no topic scoring, so a peer sending invalid ops was
// never penalised; nothing bounded what one peer could make a node verify or serve.

const { start } = trackNodes();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A hostile peer's store: holds nothing, accepts anything (so its node relays whatever it is given). */
function yesStore(): OpStore {
  return {
    heads: () => [],
    opsSince: () => [],
    getOps: () => [],
    applyBatch: (ops: Op[]): ApplyResult => ({ accepted: ops.map((o) => o.hash), rejected: [], pending: [] }),
    onAccepted: () => undefined,
  };
}
function attackerHarness() {
  const h = HARNESSES.memory!();
  return { ...h, store: yesStore() };
}
const quiet = { syncIntervalMs: 0, syncOnConnect: false } as const;

for (const storeName of Object.keys(HARNESSES)) {
  test(`${storeName} store: a peer gossiping invalid ops is rejected, scored down and graylisted; an honest peer still propagates`, async () => {
    const victim = await start({ h: HARNESSES[storeName]!(), ...quiet });
    const boot = victim.node.multiaddrs();
    const honest = await start({ h: HARNESSES[storeName]!(), bootstrap: boot, ...quiet });
    const mallory = await start({ h: attackerHarness(), bootstrap: boot, ...quiet });
    await until('both peers subscribed at the victim', () => victim.node.topicPeers().length === 2, 5_000);
    await until('victim known to mallory', () => mallory.node.topicPeers().includes(victim.node.peerId), 5_000);

    // Three kinds of invalid message: a forged signature (refused by the store), bytes that are not
    // JSON, JSON that is not an op (bad schema); then forged ones again.
    const pubsub = mallory.node.libp2p.services.pubsub;
    const someone = generateKeyPair();
    const invalid = (i: number): Promise<unknown> =>
      i % 3 === 0
        ? mallory.node.publish(victim.h.forgeSignature(someone, mallory.key, `forged ${i}`))
        : pubsub.publish(
            OPS_TOPIC,
            new TextEncoder().encode(i % 3 === 1 ? `not json ${i}` : JSON.stringify({ hash: i })),
          );
    const scores: number[] = [];
    let sent = 0;
    while (victim.node.score(mallory.node.peerId) >= GRAYLIST_THRESHOLD && sent < 20) {
      await invalid(sent);
      sent++;
      await until(`rejection ${sent}`, () => victim.node.peerStats()[mallory.node.peerId]?.rejected === sent, 3_000);
      await sleep(1_100); // the score is cached for one heartbeat
      scores.push(Math.round(victim.node.score(mallory.node.peerId)));
    }
    console.log(`${storeName}: invalid messages until graylisted: ${sent}; score after each: ${scores.join(', ')}`);
    assert.equal(sent, 3, 'graylisted after 3 invalid messages');
    assert.ok(victim.node.score(mallory.node.peerId) < GRAYLIST_THRESHOLD);
    assert.equal(victim.node.stats.gossipRejected, 3);

    // Graylisted: even a valid op from mallory is dropped before validation (nothing verified or stored).
    const received = victim.node.stats.gossipReceived;
    const fromMallory = victim.h.make(mallory.key, 'valid but from a graylisted peer', []);
    await mallory.node.publish(fromMallory);
    // ...while the honest peer's ops still propagate, and the honest peer keeps a non-negative score.
    const good = honest.h.append(honest.key, 'still works');
    await until("the honest peer's op at the victim", () => victim.h.has(good.hash), 5_000);
    await sleep(500);
    assert.equal(victim.h.has(fromMallory.hash), false, 'nothing from a graylisted peer is applied');
    assert.equal(victim.node.stats.gossipReceived, received + 1, 'only the honest op reached validation');
    assert.ok(victim.node.score(honest.node.peerId) >= 0, 'the honest peer is not penalised');
  });
}

test('per-peer op rate: past its token bucket a peer’s ops are dropped unverified and counted', async () => {
  const victim = await start({ h: HARNESSES.memory!(), ...quiet, limits: { opsPerSecond: 2, opsBurst: 5 } });
  const mallory = await start({ h: attackerHarness(), bootstrap: victim.node.multiaddrs(), ...quiet });
  await until('victim known to mallory', () => mallory.node.topicPeers().includes(victim.node.peerId), 5_000);
  await until('mallory known to victim', () => victim.node.topicPeers().includes(mallory.node.peerId), 5_000);
  const flood = Array.from({ length: 40 }, (_, i) => createSignedOp(mallory.key, { n: i }, []));
  for (const op of flood) await mallory.node.publish(op);
  await until(
    'the flood at the victim',
    () => {
      const s = victim.node.peerStats()[mallory.node.peerId];
      return (s?.accepted ?? 0) + (s?.rateLimited ?? 0) >= 40;
    },
    5_000,
  );
  const s = victim.node.peerStats()[mallory.node.peerId]!;
  console.log(`op flood of 40 at 2/s, burst 5: accepted ${s.accepted}, rate-limited ${s.rateLimited}`);
  assert.ok(s.accepted >= 5 && s.accepted <= 8, `accepted ${s.accepted}`);
  assert.equal(s.accepted + s.rateLimited, 40);
  assert.equal(flood.filter((o) => victim.h.has(o.hash)).length, s.accepted);
});

test('per-peer sync work: a peer re-asking for the whole log is throttled; another peer still syncs', async () => {
  const victim = await start({
    h: HARNESSES.memory!(),
    ...quiet,
    syncBatch: 50,
    limits: { syncOpsPerSecond: 100, syncOpsBurst: 300 },
  });
  const author = generateKeyPair();
  for (let i = 0; i < 200; i++) victim.h.append(author, `op${i}`);
  const mallory = await start({ h: attackerHarness(), bootstrap: victim.node.multiaddrs(), ...quiet });
  const conn = mallory.node.libp2p.getConnections().find((c) => c.remotePeer.toString() === victim.node.peerId);
  assert.ok(conn);
  const stream = await conn.newStream(SYNC_PROTOCOL);
  const frames = openFrames(stream, { maxFrameBytes: 4 * 1024 * 1024, maxOps: 4096, maxHashes: 1024 });
  let served = 0;
  let rounds = 0;
  for (; rounds < 40; rounds++) {
    await frames.send({ t: 'since', heads: [] }); // "everything, again"
    const r = (await frames.read()) as { ops: unknown[]; more: boolean };
    if (r.ops.length === 0) break;
    served += r.ops.length;
  }
  await stream.close().catch(() => undefined);
  console.log(`sync flood: ${served} ops served in ${rounds} rounds before throttling (burst 300)`);
  assert.ok(rounds < 40, 'the peer was throttled');
  assert.ok(served <= 350, `served ${served}`);
  assert.ok((victim.node.peerStats()[mallory.node.peerId]?.syncThrottled ?? 0) >= 1);
  // Another peer has its own budget and catches up in full.
  const fresh = await start({ h: HARNESSES.memory!(), bootstrap: victim.node.multiaddrs(), ...quiet });
  const r = await fresh.node.syncWith(victim.node.peerId);
  assert.equal(r.accepted, 200);
  assert.equal(fresh.h.digest(), victim.h.digest());
});

test('an op refused only because of this node’s clock does not penalise the peer that relayed it', async () => {
  const victim = await start({ h: HARNESSES.state!(), ...quiet });
  const relay = await start({ h: attackerHarness(), bootstrap: victim.node.multiaddrs(), ...quiet });
  await until('victim known to the relay', () => relay.node.topicPeers().includes(victim.node.peerId), 5_000);
  // Validly signed, but dated 10 min ahead: valid at a node whose clock is that far ahead, refused here.
  const author = generateKeyPair();
  const ahead = (i: number) => {
    const unsigned = {
      v: 1 as const,
      author: author.publicKey,
      deps: [],
      kind: 'account.update' as const,
      body: { name: `ahead${i}` },
      ts: Date.now() + 10 * 60_000,
    };
    const bytes = encodeOp(unsigned);
    return { ...unsigned, sig: sign(author.privateKey, bytes), hash: sha256Hex(bytes) };
  };
  for (let i = 0; i < 5; i++) await relay.node.publish(ahead(i));
  await until('five ops dropped', () => (victim.node.peerStats()[relay.node.peerId]?.ignored ?? 0) === 5, 3_000);
  await sleep(1_100);
  assert.equal(victim.node.peerStats()[relay.node.peerId]?.rejected, 0);
  assert.ok(victim.node.score(relay.node.peerId) >= 0, `score ${victim.node.score(relay.node.peerId)}`);
  assert.equal(victim.h.size(), 0);
});
