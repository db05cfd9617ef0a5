import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addrsToRedial } from '../src/bootstrap.ts';
import { PeerBook } from '../src/peer-book.ts';
import { RecentHashes } from '../src/recent-hashes.ts';

// Per-peer bookkeeping without a socket: bounded memory, buckets per peer, which bootstrap peers to redial.

test('PeerBook: a new peer starts with full buckets of the configured limits; peers do not share them', () => {
  const book = new PeerBook({ opsPerSecond: 1, opsBurst: 3 });
  const t = 1_000_000;
  const a = book.get('A', t);
  assert.deepEqual(
    [1, 2, 3, 4].map(() => a.ops.take(1, t)),
    [true, true, true, false],
  );
  assert.equal(book.get('B', t).ops.take(1, t), true, 'B has its own bucket');
  assert.equal(book.get('A', t).ops.take(1, t), false, 'A is the same state on the next sight');
  assert.equal(book.get('A', t + 1000).ops.take(1, t + 1000), true, 'refilled at 1/s');
  // The other buckets keep their defaults.
  assert.equal(Math.floor(a.syncOps.left(t)), 50_000);
  assert.equal(Math.floor(a.syncRequests.left(t)), 400);
});

test('PeerBook: past its bound the least recently seen peer is forgotten', () => {
  const book = new PeerBook({}, 3);
  for (const id of ['A', 'B', 'C']) book.get(id).counters.accepted++;
  book.get('A'); // A is now the most recently seen: B is the oldest
  book.get('D');
  assert.deepEqual(Object.keys(book.counters()), ['C', 'A', 'D']);
  assert.equal(book.counters().A?.accepted, 1, 'A kept its counters');
  assert.equal(book.get('B').counters.accepted, 0, 'B comes back fresh');
});

test('PeerBook.counters: a copy, so callers cannot change the counts', () => {
  const book = new PeerBook();
  book.get('A').counters.rejected = 2;
  const snapshot = book.counters();
  snapshot.A!.rejected = 99;
  assert.equal(book.get('A').counters.rejected, 2);
});

test('RecentHashes: first in, first out past its bound', () => {
  const recent = new RecentHashes(3);
  for (const h of ['a', 'b', 'c', 'd']) recent.add(h);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((h) => recent.has(h)),
    [false, true, true, true],
  );
  recent.add('b'); // already held: nothing dropped
  assert.equal(recent.size, 3);
  assert.equal(recent.has('b'), true);
});

test('addrsToRedial: dial addresses whose peer is unknown or disconnected, never our own', () => {
  const addrs = ['/a', '/b', '/c', '/d'];
  const cases: [string, [string, string][], string[], string[]][] = [
    ['nothing seen yet', [], [], ['/a', '/b', '/c', '/d']],
    ['a connected peer is skipped', [['/a', 'P1']], ['P1'], ['/b', '/c', '/d']],
    ['a disconnected peer is redialled', [['/a', 'P1']], ['P2'], ['/a', '/b', '/c', '/d']],
    ['our own address is skipped even when disconnected', [['/b', 'ME']], [], ['/a', '/c', '/d']],
    [
      'two addresses of one connected peer',
      [
        ['/a', 'P1'],
        ['/c', 'P1'],
      ],
      ['P1'],
      ['/b', '/d'],
    ],
  ];
  for (const [name, seen, connected, want] of cases) {
    assert.deepEqual(addrsToRedial(addrs, new Map(seen), 'ME', new Set(connected)), want, name);
  }
});
