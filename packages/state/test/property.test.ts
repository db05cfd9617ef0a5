import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Op } from '../src/index.ts';
import { randomHistory } from './generate.ts';
import { memStore, rng, shuffle } from './helpers.ts';

test('random valid op sets delivered to 5 replicas in random orders with duplicates give identical digests', () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    // Odd seeds run an admins network: replicas join it knowing its genesis (as `form node up --join` does).
    const { ops, digest, genesis } = randomHistory(seed, 150);
    assert.equal(ops.length, 150);
    const r = rng(seed * 7919);
    const digests = new Set<string>();
    for (let replica = 0; replica < 5; replica++) {
      const s = memStore({ genesis });
      const delivery: Op[] = shuffle([...ops, ...ops.filter(() => r.next() < 0.3)], r);
      for (let i = 0; i < delivery.length; ) {
        const n = 1 + r.int(25);
        const res = s.applyBatch(delivery.slice(i, i + n));
        assert.deepEqual(res.rejected, [], `seed ${seed} replica ${replica}: nothing valid is rejected`);
        i += n;
      }
      assert.equal(s.size, ops.length, `seed ${seed} replica ${replica}: all ops accepted`);
      assert.equal(s.pendingStats().ops, 0);
      digests.add(s.digest());
      s.close();
    }
    assert.deepEqual([...digests], [digest], `seed ${seed}: every replica has the generator's digest`);
  }
});

test('views differ when op sets differ (the digest is not constant)', () => {
  const { ops } = randomHistory(9, 40);
  const a = memStore();
  const b = memStore();
  a.applyBatch(ops);
  b.applyBatch(ops.slice(0, 30));
  assert.notEqual(a.digest(), b.digest());
});
