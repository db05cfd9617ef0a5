import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isNodeHealthy, MAX_HEARTBEAT_SKEW_MS, placementNodesFrom } from '../src/index.ts';

const now = 1_700_000_000_000;
const beat = (ts: number, status = 'healthy') => ({ id: 'x', heartbeat: { ts, status } });

test('a heartbeat from the far future is not liveness (a forged ts must never keep a node healthy forever)', () => {
  assert.equal(isNodeHealthy(beat(9e15), now, 30_000), false);
  assert.equal(isNodeHealthy(beat(now + MAX_HEARTBEAT_SKEW_MS + 1), now, 30_000), false);
  // a clock a little ahead is tolerated
  assert.equal(isNodeHealthy(beat(now + MAX_HEARTBEAT_SKEW_MS), now, 30_000), true);
  assert.equal(isNodeHealthy(beat(now + 5000), now, 30_000), true);
  // the edges of the timeout window
  assert.equal(isNodeHealthy(beat(now - 30_000), now, 30_000), true);
  assert.equal(isNodeHealthy(beat(now - 30_001), now, 30_000), false);
  // a node never counts itself out, even with a bad beat
  assert.equal(isNodeHealthy({ ...beat(9e15), id: 'me' }, now, 30_000, 'me'), true);
});

test('placementNodesFrom builds the placement input once: health by heartbeat, self always healthy', () => {
  const capacity = { vcpu: 4, memMiB: 4096, diskGiB: 50 };
  const nodes = [
    { id: 'me', capacity, heartbeat: null },
    { id: 'fresh', capacity, heartbeat: { ts: now - 1000, status: 'healthy' } },
    { id: 'stale', capacity, heartbeat: { ts: now - 60_000, status: 'healthy' } },
    { id: 'draining', capacity, heartbeat: { ts: now, status: 'draining' } },
    { id: 'forged', capacity, heartbeat: { ts: 9e15, status: 'healthy' } },
  ];
  const out = placementNodesFrom(nodes, now, 30_000, 'me');
  assert.deepEqual(
    out.map((n) => [n.id, n.healthy]),
    [
      ['me', true],
      ['fresh', true],
      ['stale', false],
      ['draining', false],
      ['forged', false],
    ],
  );
  assert.deepEqual(out[1]?.capacity, capacity);
  assert.deepEqual(out[1]?.used, { vcpu: 0, memMiB: 0, diskGiB: 0 });
  // without self, no node is exempt
  assert.equal(placementNodesFrom(nodes, now, 30_000)[0]?.healthy, false);
});
