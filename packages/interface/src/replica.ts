import { FormError } from './errors.ts';

/** The states a node may report in `instance.status` (every state but `claimed`). */
export const REPORTED_REPLICA_STATES = [
  'pending',
  'starting',
  'running',
  'suspended',
  'stopped',
  'failed',
  'deleted',
] as const;
export type ReportedReplicaState = (typeof REPORTED_REPLICA_STATES)[number];

/**
 * The closed lifecycle of one replica of an instance (one node's copy), as every node reads it from
 * the state log. `claimed` is a replica whose node recorded `instance.claim` but no `instance.status`
 * yet (the state views show it as `state: null`); the others are what a node reports.
 */
export const REPLICA_STATES = ['claimed', ...REPORTED_REPLICA_STATES] as const;
export type ReplicaState = (typeof REPLICA_STATES)[number];

/**
 * Which states a replica may move to from each state. A node re-reports its current state to update
 * the formnet IP, revision or reason (hence the self-edges). Why the other edges exist:
 * - `starting` from anywhere alive: a (re)boot, a restart after a crash, applying a new revision;
 * - `running` from `claimed`/`stopped`/`failed` too: a VM re-attached after a daemon restart, or one
 *   that became ready after its boot was reported failed (timeout), is reported as it is;
 * - `stopped`: the owner stopped it, its node went down, or the replica moved to another node;
 * - `failed`: a boot, a fetch or the entrypoint failed; `deleted`: the instance was deleted;
 * - `suspended` only from `running` (idle past its autostop: memory on its node's disk, no VM running);
 *   it leaves by waking (`running`), or like a running replica (stopped, failed, deleted, starting).
 * `deleted` is final; nothing goes back to `claimed`, and `pending` only precedes the first boot.
 */
export const REPLICA_TRANSITIONS: Record<ReplicaState, readonly ReportedReplicaState[]> = {
  claimed: ['pending', 'starting', 'running', 'stopped', 'failed', 'deleted'],
  pending: ['pending', 'starting', 'running', 'stopped', 'failed', 'deleted'],
  starting: ['starting', 'running', 'stopped', 'failed', 'deleted'],
  running: ['running', 'starting', 'suspended', 'stopped', 'failed', 'deleted'],
  suspended: ['suspended', 'running', 'starting', 'stopped', 'failed', 'deleted'],
  stopped: ['stopped', 'starting', 'running', 'failed', 'deleted'],
  failed: ['failed', 'starting', 'running', 'stopped', 'deleted'],
  deleted: [],
};

/** True for one of the closed replica states. */
export function isReplicaState(value: unknown): value is ReplicaState {
  return typeof value === 'string' && (REPLICA_STATES as readonly string[]).includes(value);
}

/**
 * The lifecycle state of a replica as the state views carry it: `null` (claimed, nothing reported) is
 * `claimed`; a value outside the closed set is refused.
 *
 * @example replicaStateOf(replica.state) // 'claimed' for a fresh claim
 */
export function replicaStateOf(state: string | null): ReplicaState {
  if (state === null) return 'claimed';
  if (isReplicaState(state)) return state;
  throw new FormError(
    'STATE_OP_INVALID',
    `Cannot read replica state ${JSON.stringify(state)}: it is not one of ${REPLICA_STATES.join(', ')}`,
  );
}

/** True when a replica in `from` may report `to`. */
export function canTransitionReplica(from: ReplicaState, to: ReportedReplicaState): boolean {
  return REPLICA_TRANSITIONS[from].includes(to);
}

/**
 * Throw STATE_OP_INVALID when a replica in `from` may not report `to`, naming what it may report.
 *
 * @example
 * assertReplicaTransition('deleted', 'running', 'abc on node n1');
 * // throws "Cannot report replica abc on node n1 as running: it is deleted"
 */
export function assertReplicaTransition(from: ReplicaState, to: ReportedReplicaState, replica = ''): void {
  if (canTransitionReplica(from, to)) return;
  const allowed = REPLICA_TRANSITIONS[from];
  const who = replica ? `replica ${replica}` : 'a replica';
  throw new FormError('STATE_OP_INVALID', `Cannot report ${who} as ${to}: it is ${from}`, {
    hint: allowed.length
      ? `A ${from} replica may report: ${allowed.join(', ')}.`
      : `A ${from} replica is final: create a new instance instead.`,
    details: { state: from, to, allowed: [...allowed] },
  });
}
