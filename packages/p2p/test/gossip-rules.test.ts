import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countOpVerdict, decodeGossipOp, type GossipVerdict, verdictOfApply } from '../src/gossip-rules.ts';
import type { PeerCounters } from '../src/limits.ts';
import type { ApplyResult } from '../src/op-store.ts';
import { emptyStats } from '../src/stats.ts';

// The decisions of gossip validation without a socket: what a message is worth, what it is counted as.

const bytes = (s: string) => new TextEncoder().encode(s);

test('decodeGossipOp: only a JSON object with a string hash, within the size bound, is an op', () => {
  const cases: [string, string, number, object | undefined][] = [
    ['an op', '{"hash":"h1","body":1}', 1024, { hash: 'h1', body: 1 }],
    ['exactly at the bound', '{"hash":"h"}', 12, { hash: 'h' }],
    ['one byte over the bound', '{"hash":"h"}', 11, undefined],
    ['not JSON', '{"hash":', 1024, undefined],
    ['no hash', '{"body":1}', 1024, undefined],
    ['a numeric hash', '{"hash":1}', 1024, undefined],
    ['an array', '[{"hash":"h"}]', 1024, undefined],
    ['null', 'null', 1024, undefined],
    ['a string', '"h"', 1024, undefined],
  ];
  for (const [name, text, max, want] of cases) assert.deepEqual(decodeGossipOp(bytes(text), max), want, name);
});

test('verdictOfApply: accepted is forwarded, rejected penalised unless only the clock refused it, pending syncs', () => {
  const none = { accepted: [], rejected: [], pending: [] };
  const cases: [string, ApplyResult, GossipVerdict, boolean][] = [
    ['accepted by hash', { ...none, accepted: ['h'] }, 'accept', false],
    ['accepted as a record', { ...none, accepted: [{ hash: 'h' }] }, 'accept', false],
    ['accepted under another hash only', { ...none, accepted: ['other'] }, 'ignore', false],
    ['rejected (bad signature)', { ...none, rejected: [{ hash: 'h', reason: 'bad signature' }] }, 'reject', false],
    ['rejected under the computed hash', { ...none, rejected: ['computed'] }, 'reject', false],
    ['rejected: clock flag', { ...none, rejected: [{ hash: 'h', clock: true }] }, 'ignore', false],
    ['rejected: in the future', { ...none, rejected: [{ hash: 'h', reason: 'ts is in the future' }] }, 'ignore', false],
    [
      'rejected: clock and a real reason',
      {
        ...none,
        rejected: [
          { hash: 'h', clock: true },
          { hash: 'h', reason: 'bad signature' },
        ],
      },
      'reject',
      false,
    ],
    ['rejection wins over acceptance', { ...none, accepted: ['h'], rejected: ['h'] }, 'reject', false],
    ['pending: parents missing', { ...none, pending: ['h'] }, 'ignore', true],
    ['pending as a record', { ...none, pending: [{ hash: 'h' }] }, 'ignore', true],
    ['another op pending', { ...none, pending: ['other'] }, 'ignore', false],
    ['nothing reported (already held)', none, 'ignore', false],
  ];
  for (const [name, r, verdict, syncSender] of cases) {
    assert.deepEqual(verdictOfApply(r, 'h'), { verdict, syncSender }, name);
  }
});

test('countOpVerdict: each verdict counts once node-wide and once for the sender', () => {
  const cases: [GossipVerdict, 'gossipAccepted' | 'gossipRejected' | 'gossipIgnored', keyof PeerCounters][] = [
    ['accept', 'gossipAccepted', 'accepted'],
    ['reject', 'gossipRejected', 'rejected'],
    ['ignore', 'gossipIgnored', 'ignored'],
  ];
  for (const [verdict, stat, counter] of cases) {
    const stats = emptyStats();
    const counters: PeerCounters = {
      accepted: 0,
      rejected: 0,
      ignored: 0,
      rateLimited: 0,
      syncThrottled: 0,
      syncOpsServed: 0,
    };
    countOpVerdict(stats, counters, verdict);
    assert.deepEqual(stats, { ...emptyStats(), [stat]: 1 }, verdict);
    assert.deepEqual(
      counters,
      { accepted: 0, rejected: 0, ignored: 0, rateLimited: 0, syncThrottled: 0, syncOpsServed: 0, [counter]: 1 },
      verdict,
    );
  }
});
