import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Action, neverReadyReason, type PlanInput, plan } from '../src/plan.ts';
import { input, instance, iso, NOW, vm } from './plan-fixtures.ts';

// A VM no boot action waits for (the node restarted while it booted) and that never becomes ready: its
// replica fails after the ready timeout instead of staying `starting` for good.

const TIMEOUT = 180_000;
const late = vm({ ready: false, readyAt: undefined, startedAt: iso(NOW - TIMEOUT - 1) });
const pausedLate = vm({ state: 'paused', ready: false, readyAt: undefined, startedAt: iso(NOW - TIMEOUT - 1) });

const rows: Array<[string, Partial<PlanInput>, Action]> = [
  [
    'not ready, started within the timeout: wait',
    { vm: vm({ ready: false, startedAt: iso(NOW - 60_000) }), instance: instance({}, { state: 'starting' }) },
    { kind: 'nothing', why: 'its VM is not ready' },
  ],
  [
    'not ready past the timeout: failed, saying why and what to do',
    { vm: late, instance: instance({}, { state: 'starting' }) },
    { kind: 'report', state: 'failed', reason: neverReadyReason(late, TIMEOUT) },
  ],
  [
    'paused and not ready past the timeout (a boot cut short): failed too',
    { vm: pausedLate, instance: instance({}, { state: 'starting' }) },
    { kind: 'report', state: 'failed', reason: neverReadyReason(pausedLate, TIMEOUT) },
  ],
  [
    'already reported failed: nothing more (no report loop)',
    { vm: late, instance: instance({}, { state: 'failed' }) },
    { kind: 'nothing', why: 'failed: its VM never became ready' },
  ],
  [
    'a boot action still waits for it (busy): its own timeout decides',
    { vm: late, instance: instance({}, { state: 'starting' }), busy: true },
    { kind: 'nothing', why: 'an action on it is running' },
  ],
  [
    'no start time known: wait',
    { vm: vm({ ready: false, startedAt: null }), instance: instance({}, { state: 'starting' }) },
    { kind: 'nothing', why: 'its VM is not ready' },
  ],
];

for (const [name, over, want] of rows) {
  test(name, () => assert.deepEqual(plan(input({ readyTimeoutMs: TIMEOUT, ...over })), want));
}

test('the reason names the timeout, the state and the way to boot it again', () => {
  const why = neverReadyReason(pausedLate, TIMEOUT);
  assert.match(why, /within 180 s of its start at 2025-12-31T23:56:59\.999Z \(it is paused;/);
  assert.match(why, /`form manage stop` then `form manage start`/);
});
