import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { MemoryOpStore } from '../src/memory-op-store.ts';
import { createP2PNode } from '../src/node.ts';
import type { ApplyResult, Op } from '../src/op-store.ts';
import { PeerBook } from '../src/peer-book.ts';
import type { SyncRequest } from '../src/sync-protocol.ts';
import {
  acceptableOps,
  answerOps,
  checkFrameRoom,
  FRAME_OVERHEAD_BYTES,
  frameLimits,
  knownHeads,
  MAX_HASHES,
  serveAllowance,
  shouldLogThrottle,
  usableHashes,
  wantsAnotherRound,
} from '../src/sync-rules.ts';

// The decisions of anti-entropy without a socket: how much is served, what an answer holds, when a client stops.

const ops = (n: number, pad = 0): Op[] =>
  Array.from({ length: n }, (_, i) => ({ hash: `h${i}`, ...(pad ? { pad: 'x'.repeat(pad) } : {}) }));
const since: SyncRequest = { t: 'since', heads: [] };
const get: SyncRequest = { t: 'get', hashes: [] };

test('frameLimits: defaults, and the batch capped at what a client accepts', () => {
  const cases: [string, { maxFrameBytes?: number; syncBatch?: number }, number, number][] = [
    ['defaults', {}, 4 * 1024 * 1024, 256],
    ['a small batch', { syncBatch: 7 }, 4 * 1024 * 1024, 7],
    ['a batch over MAX_OPS_PER_FRAME', { syncBatch: 10_000 }, 4 * 1024 * 1024, 4096],
    ['a frame size', { maxFrameBytes: 1 << 20 }, 1 << 20, 256],
  ];
  for (const [name, opts, maxFrameBytes, maxOps] of cases) {
    assert.deepEqual(frameLimits(opts), { maxFrameBytes, maxOps, maxHashes: MAX_HASHES }, name);
  }
});

test('serveAllowance: the batch, cut to the op budget; 0 (counted) when either budget is spent', () => {
  const t = 5_000_000;
  const cases: [string, { syncOpsBurst: number; syncRequestsBurst: number }, number, number[]][] = [
    ['plenty of budget', { syncOpsBurst: 1000, syncRequestsBurst: 10 }, 256, [256, 256]],
    ['the op budget cuts the batch', { syncOpsBurst: 100, syncRequestsBurst: 10 }, 256, [100, 100]],
    ['out of requests after two', { syncOpsBurst: 1000, syncRequestsBurst: 2 }, 256, [256, 256, 0, 0]],
    ['no op budget at all', { syncOpsBurst: 0, syncRequestsBurst: 10 }, 256, [0, 0]],
  ];
  for (const [name, limits, maxOps, want] of cases) {
    const peer = new PeerBook({ ...limits, syncOpsPerSecond: 1, syncRequestsPerSecond: 1 }).get('P', t);
    const got = want.map(() => serveAllowance(peer, maxOps, t));
    assert.deepEqual(got, want, name);
    assert.equal(peer.counters.syncThrottled, want.filter((n) => n === 0).length, `${name}: throttled count`);
  }
});

test('serveAllowance: a request refused for its op budget does not spend a request token', () => {
  const t = 5_000_000;
  const limits = { syncOpsBurst: 10, syncOpsPerSecond: 10, syncRequestsBurst: 1, syncRequestsPerSecond: 0.001 };
  const peer = new PeerBook(limits).get('P', t);
  peer.syncOps.take(10, t); // op budget spent
  assert.equal(serveAllowance(peer, 256, t), 0);
  assert.equal(serveAllowance(peer, 256, t + 1000), 10, 'op budget refilled, the one request token still there');
  assert.equal(serveAllowance(peer, 256, t + 1000), 0, 'and now it is spent');
});

test('shouldLogThrottle: the first time and every hundredth', () => {
  const logged = Array.from({ length: 301 }, (_, i) => i + 1).filter(shouldLogThrottle);
  assert.deepEqual(logged, [1, 100, 200, 300]);
});

test('answerOps: at most maxOps; `more` when the store had more or the frame cut the answer', () => {
  const cases: [string, SyncRequest, Op[], number, number, number, boolean][] = [
    ['since, all fit', since, ops(3), 5, 1 << 20, 3, false],
    ['since, one extra found', since, ops(6), 5, 1 << 20, 5, true],
    ['since, exactly maxOps', since, ops(5), 5, 1 << 20, 5, false],
    ['get, more held than maxOps', get, ops(6), 5, 1 << 20, 5, false],
    // 66 560 bytes of overhead are kept for heads; each op is about 1 KiB.
    ['since, the frame cuts it', since, ops(10, 1000), 100, 66_560 + 3_100, 3, true],
    ['get, the frame cuts it', get, ops(10, 1000), 100, 66_560 + 3_100, 3, true],
    // fitOps leaves out a first op larger than the budget: the answer is empty, with `more`.
    ['an op larger than the frame is left out', since, ops(2, 10_000), 100, 66_560 + 100, 0, true],
  ];
  for (const [name, req, found, maxOps, frame, n, more] of cases) {
    const got = answerOps(req, found, maxOps, frame);
    assert.deepEqual(
      got.ops.map((o) => o.hash),
      found.slice(0, n).map((o) => o.hash),
      name,
    );
    assert.equal(got.more, more, `${name}: more`);
  }
});

test('checkFrameRoom: a frame must hold the largest op beside the heads, else CONFIG_INVALID', () => {
  const op = { hash: 'big', pad: 'x'.repeat(10_000) };
  const opBytes = Buffer.byteLength(JSON.stringify(op));
  const room = opBytes + FRAME_OVERHEAD_BYTES;
  // Enough room: the check passes and an op of exactly maxOpBytes is served.
  checkFrameRoom(256 * 1024, 4 * 1024 * 1024);
  checkFrameRoom(opBytes, room);
  assert.deepEqual(answerOps(since, [op], 100, room).ops, [op], 'an op of maxOpBytes fits a frame the check allows');
  // One byte short: such an op is never served (no ops, `more` for ever), so the check refuses the sizes.
  assert.deepEqual(answerOps(since, [op], 100, room - 1), { ops: [], more: true });
  assert.throws(
    () => checkFrameRoom(opBytes, room - 1),
    (e: unknown) =>
      isFormError(e) &&
      e.code === 'CONFIG_INVALID' &&
      /^Cannot start p2p: maxFrameBytes \(\d+\)/.test(e.message) &&
      e.hint === `Raise maxFrameBytes to at least ${room}, or lower maxOpBytes to at most ${opBytes - 1}.`,
  );
});

test('createP2PNode refuses a maxFrameBytes below maxOpBytes + overhead before it listens', async () => {
  const opts = {
    key: generateKeyPair(),
    store: new MemoryOpStore(),
    logger: createLogger('silent'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    maxOpBytes: 256 * 1024,
    maxFrameBytes: 256 * 1024,
  };
  // Stop a node that started anyway, so a missing check fails this test instead of hanging the file.
  const started = await createP2PNode(opts).then(
    async (node) => {
      await node.stop();
      return 'started';
    },
    (e: unknown) => e,
  );
  assert.ok(
    isFormError(started) && started.code === 'CONFIG_INVALID',
    `expected CONFIG_INVALID, got ${String(started)}`,
  );
});

test('knownHeads: own heads first, then the hashes just received, deduplicated and bounded', () => {
  assert.deepEqual(knownHeads(['a', 'b'], ['b', 'c']), ['a', 'b', 'c']);
  assert.deepEqual(knownHeads([], []), []);
  const many = Array.from({ length: MAX_HASHES + 10 }, (_, i) => `h${i}`);
  assert.deepEqual(knownHeads(['a'], many), ['a', ...many.slice(0, MAX_HASHES - 1)]);
});

test('acceptableOps: ops over the size bound are dropped', () => {
  const small = { hash: 's' };
  const big = { hash: 'b', pad: 'x'.repeat(100) };
  const bound = Buffer.byteLength(JSON.stringify(small));
  assert.deepEqual(acceptableOps([small, big, small], bound), [small, small]);
  assert.deepEqual(acceptableOps([big], Buffer.byteLength(JSON.stringify(big))), [big], 'the bound is inclusive');
});

test('usableHashes: what the store now holds, neither rejected nor pending', () => {
  const applied = ops(4);
  const none = { accepted: [], rejected: [], pending: [] };
  const cases: [string, ApplyResult, string[]][] = [
    ['all accepted', { ...none, accepted: ['h0', 'h1', 'h2', 'h3'] }, ['h0', 'h1', 'h2', 'h3']],
    ['already held (not reported)', none, ['h0', 'h1', 'h2', 'h3']],
    ['some rejected or pending', { ...none, rejected: ['h1'], pending: [{ hash: 'h3' }] }, ['h0', 'h2']],
    ['all refused: a hostile peer', { ...none, rejected: ['h0', 'h1'], pending: ['h2', 'h3'] }, []],
  ];
  for (const [name, r, want] of cases) assert.deepEqual(usableHashes(applied, r), want, name);
});

test('wantsAnotherRound: while the server has more or our heads moved', () => {
  const cases: [string, boolean, string[], string[], boolean][] = [
    ['caught up', false, ['a'], ['a'], false],
    ['server has more', true, ['a'], ['a'], true],
    ['heads moved', false, ['a'], ['b'], true],
    ['a head added', false, ['a'], ['a', 'b'], true],
    ['same heads in another order', false, ['a', 'b'], ['b', 'a'], true],
  ];
  for (const [name, more, before, after, want] of cases) {
    assert.equal(wantsAnotherRound(more, before, after), want, name);
  }
});
