// followState (src/follow-state.ts), which the ingress, the port granter and the public DNS verifier
// share: a burst of accepted ops costs one run, ops it does not want cost none, the timer runs too,
// and stopping ends both.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { until } from '@formation/interface/testing';
import type { Op } from '@formation/state';
import { followState } from '../src/follow-state.ts';

/** A store that accepts ops only when the test says so. */
function fakeStore() {
  const listeners = new Set<(op: Op) => void>();
  return {
    onAccepted(fn: (op: Op) => void) {
      listeners.add(fn);
      return () => void listeners.delete(fn);
    },
    accept(...kinds: string[]) {
      for (const kind of kinds) for (const fn of listeners) fn({ kind } as Op);
    },
    listening: () => listeners.size,
  };
}

const turn = () => new Promise((r) => setImmediate(r));

test('a burst of accepted ops in one turn runs once, on the next turn; a later op runs again', async () => {
  const store = fakeStore();
  let runs = 0;
  const stop = followState(store, () => runs++, { everyMs: 3_600_000 });
  store.accept('port.claim', 'port.granted', 'instance.create');
  assert.equal(runs, 0, 'not inside the listener');
  await turn();
  assert.equal(runs, 1);
  store.accept('port.release');
  await turn();
  assert.equal(runs, 2);
  stop();
});

test('ops it does not want cost no run', async () => {
  const store = fakeStore();
  let runs = 0;
  const stop = followState(store, () => runs++, { everyMs: 3_600_000, wants: (op) => op.kind === 'dns.claim' });
  store.accept('node.heartbeat', 'instance.create');
  await turn();
  assert.equal(runs, 0);
  store.accept('node.heartbeat', 'dns.claim');
  await turn();
  assert.equal(runs, 1);
  stop();
});

test('the timer runs without ops; stop ends the timer and the listener', async () => {
  const store = fakeStore();
  let runs = 0;
  const stop = followState(store, () => runs++, { everyMs: 20 });
  await until('two timer runs', () => runs >= 2);
  stop();
  assert.equal(store.listening(), 0);
  const after = runs;
  store.accept('port.claim');
  await new Promise((r) => setTimeout(r, 60)); // three timer periods: none may run
  assert.equal(runs, after);
});
