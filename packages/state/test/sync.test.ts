import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StateStore } from '../src/index.ts';
import { randomHistory } from './generate.ts';
import { memStore } from './helpers.ts';

/** Anti-entropy as the p2p layer would do it: pull pages of what we lack until a short page. */
function pull(from: StateStore, to: StateStore, page: number): number {
  let rounds = 0;
  for (;;) {
    rounds++;
    const ops = from.opsSince(to.heads(), page);
    const r = to.applyBatch(ops);
    assert.deepEqual(r.rejected, []);
    assert.deepEqual(r.pending, [], 'pages come in topological order: nothing waits');
    if (ops.length < page) return rounds;
  }
}

test('two diverged replicas converge by exchanging heads and ops (opsSince / applyBatch)', () => {
  const { ops } = randomHistory(21, 120);
  const a = memStore();
  const b = memStore();
  a.applyBatch(ops.slice(0, 90));
  b.applyBatch([...ops.slice(0, 40), ...ops.slice(90)]); // ops 90.. whose deps b lacks are parked
  assert.notEqual(a.digest(), b.digest());
  pull(a, b, 16);
  pull(b, a, 16);
  assert.equal(a.size, 120);
  assert.equal(b.size, 120);
  assert.equal(a.digest(), b.digest());
  assert.deepEqual(a.heads(), b.heads());
  assert.deepEqual(a.opsSince(b.heads()), [], 'nothing left to send');
});

test('getOps returns stored ops unchanged; onAccepted fires only for accepted ops', () => {
  const { ops } = randomHistory(22, 30);
  const a = memStore();
  const fired: string[] = [];
  a.onAccepted((op) => fired.push(op.hash));
  a.applyBatch([...ops, { ...ops[0], sig: 'ff'.repeat(64), hash: undefined }]);
  assert.deepEqual(
    fired,
    ops.map((o) => o.hash),
  );
  const back = a.getOps([ops[3]!.hash, 'ee'.repeat(32), ops[7]!.hash]);
  assert.deepEqual(back, [ops[3], ops[7]]);
  const fresh = memStore();
  fresh.applyBatch(a.opsSince([], 1000));
  assert.equal(fresh.digest(), a.digest());
});
