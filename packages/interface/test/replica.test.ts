import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertReplicaTransition,
  canTransitionReplica,
  isFormError,
  REPLICA_STATES,
  REPLICA_TRANSITIONS,
  REPORTED_REPLICA_STATES,
  replicaStateOf,
} from '../src/index.ts';

test('deleted is final: every report after it is refused with a coded error naming the state', () => {
  for (const to of REPORTED_REPLICA_STATES) {
    assert.throws(
      () => assertReplicaTransition('deleted', to, 'abc on node n1'),
      (e: unknown) =>
        isFormError(e) &&
        e.code === 'STATE_OP_INVALID' &&
        e.message === `Cannot report replica abc on node n1 as ${to}: it is deleted` &&
        /final/.test(e.hint ?? '') &&
        (e.details?.allowed as string[]).length === 0,
    );
  }
});

test('a refused transition names the allowed ones', () => {
  assert.throws(
    () => assertReplicaTransition('running', 'pending'),
    (e: unknown) =>
      isFormError(e) &&
      e.message === 'Cannot report a replica as pending: it is running' &&
      e.hint === 'A running replica may report: running, starting, suspended, stopped, failed, deleted.',
  );
});

test('the lifecycle the controller walks is allowed', () => {
  const walk = ['claimed', 'starting', 'running', 'starting', 'running', 'stopped', 'starting', 'failed', 'starting'];
  for (let i = 1; i < walk.length; i++) {
    assert.doesNotThrow(() => assertReplicaTransition(walk[i - 1] as never, walk[i] as never));
  }
  // re-attached after a daemon restart, or ready after a boot reported failed
  assert.ok(canTransitionReplica('stopped', 'running'));
  assert.ok(canTransitionReplica('failed', 'running'));
  for (const s of REPLICA_STATES) if (s !== 'deleted') assert.ok(canTransitionReplica(s, 'deleted'));
  // pending only before the first boot
  assert.equal(canTransitionReplica('starting', 'pending'), false);
  assert.equal(canTransitionReplica('stopped', 'pending'), false);
});

test('the table is closed: every state has a row, every target is a reported state', () => {
  assert.deepEqual(Object.keys(REPLICA_TRANSITIONS).sort(), [...REPLICA_STATES].sort());
  for (const targets of Object.values(REPLICA_TRANSITIONS)) {
    for (const t of targets) assert.ok((REPORTED_REPLICA_STATES as readonly string[]).includes(t));
  }
});

test('replicaStateOf reads the views: null is claimed, an unknown state is refused', () => {
  assert.equal(replicaStateOf(null), 'claimed');
  assert.equal(replicaStateOf('running'), 'running');
  assert.throws(
    () => replicaStateOf('exploded'),
    (e: unknown) => isFormError(e) && e.code === 'STATE_OP_INVALID',
  );
});

test('suspended (scale to zero): only a running replica suspends; it wakes to running or leaves like one', () => {
  assert.ok(canTransitionReplica('running', 'suspended'));
  for (const from of ['claimed', 'pending', 'starting', 'stopped', 'failed', 'deleted'] as const) {
    assert.equal(canTransitionReplica(from, 'suspended'), false, from);
  }
  for (const to of ['suspended', 'running', 'starting', 'stopped', 'failed', 'deleted'] as const) {
    assert.ok(canTransitionReplica('suspended', to), to);
  }
  assert.equal(canTransitionReplica('suspended', 'pending'), false);
});
