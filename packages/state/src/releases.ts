// Releases of an instance (issue 20, rolling updates): what the owner shipped, numbered, and which of
// them failed during their roll-out. Pure: the views call `releaseState` with what they folded in, so
// every node with the same ops reaches the same target and the same verdicts.
import { addressOf } from '@formation/identity';

type Resources = { vcpu: number; memMiB: number; diskGiB: number };

/**
 * Failure reports count against a release only within this long after the release's own op (ms):
 * a replica that fails much later (a node's disk, a crash after a week) is healed like any failure
 * and never rolls a finished release back.
 */
export const UPDATE_WINDOW_MS = 30 * 60_000;
/** A failure report dated this much before its release's op is not about that release (clock skew, ms). */
const SKEW_MS = 5 * 60_000;

/** One release as the owner made it: release 1 is the instance.create, later ones instance.update `release`. */
export interface ReleaseRecord {
  release: number;
  formpackId: string;
  resources: Resources;
  /** The op's ts (the owner's clock). */
  ts: number;
  /** Public key of the account that made it. */
  actor: string;
  op: string;
  /** The release it restores (`form manage rollback`), or null. */
  rollbackOf: number | null;
}

/** A node's report that its replica of `release` failed or is unhealthy (instance.status / instance.health). */
export interface FailureEvidence {
  release: number;
  node: string;
  ts: number;
  reason: string;
}

export type ReleaseResult = 'current' | 'rolling' | 'rolled-back' | 'failed' | 'superseded';

/** A release as `form manage releases` shows it. */
export interface ReleaseView {
  release: number;
  formpackId: string;
  resources: Resources;
  at: number;
  /** Address of the account that made it. */
  by: string;
  op: string;
  rollbackOf: number | null;
  /**
   * `current`: the target, every assigned replica runs it; `rolling`: the target, replicas still being
   * replaced; `rolled-back`: failed during its roll-out and the instance went back; `failed`: failed but
   * nothing older to go back to; `superseded`: an older one.
   */
  result: ReleaseResult;
  /** Why it failed (the first counted report: node address and its reason), or null. */
  failure: string | null;
}

export interface ReleaseInput {
  releases: readonly ReleaseRecord[];
  /** The release number of the owner's latest (LWW) update, 1 when none carried one. */
  latest: number;
  evidence: readonly FailureEvidence[];
  /** Nodes whose reports count (admitted, holding a claim on the instance). */
  counted: ReadonlySet<string>;
  /** Assigned replicas with the release they report. */
  replicas: ReadonlyArray<{ node: string; state: string | null; release: number | null }>;
}

export interface ReleaseState {
  /** The release every node works toward: the latest, or the newest earlier one when it failed. */
  target: number;
  failed: ReadonlySet<number>;
  releases: ReleaseView[];
}

/**
 * Which release an instance runs toward and how each release went. A release fails when a counted
 * node reports its replica of it `failed` or `unhealthy` within `UPDATE_WINDOW_MS` of the release;
 * release 1 never fails in this sense (there is nothing to go back to). The target is the latest
 * release unless it failed, then the newest earlier release that did not.
 *
 * @example
 * releaseState({ releases, latest: 2, evidence: [{ release: 2, node, ts, reason: 'exited' }], counted, replicas }).target // 1
 */
export function releaseState(i: ReleaseInput): ReleaseState {
  const byNumber = new Map(i.releases.map((r) => [r.release, r]));
  const failure = new Map<number, string>();
  const sorted = [...i.evidence].sort((a, b) => a.ts - b.ts || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  for (const e of sorted) {
    const r = byNumber.get(e.release);
    if (!r || r.release < 2 || !i.counted.has(e.node) || failure.has(e.release)) continue;
    if (e.ts < r.ts - SKEW_MS || e.ts - r.ts > UPDATE_WINDOW_MS) continue;
    failure.set(e.release, `${addressOf(e.node)}: ${e.reason}`.slice(0, 300));
  }
  let target = i.latest;
  if (failure.has(target)) {
    const older = [...byNumber.keys()].filter((n) => n < i.latest && !failure.has(n)).sort((a, b) => b - a);
    if (older.length > 0) target = older[0] as number;
  }
  const t = byNumber.get(target);
  const atTarget = (rel: number | null) => {
    const r = rel === null ? undefined : byNumber.get(rel);
    return !!r && !!t && r.formpackId === t.formpackId;
  };
  const done = i.replicas.length > 0 && i.replicas.every((r) => r.state === 'running' && atTarget(r.release));
  const releases = [...byNumber.values()]
    .sort((a, b) => a.release - b.release)
    .map((r): ReleaseView => {
      const failed = failure.get(r.release) ?? null;
      const result: ReleaseResult =
        r.release === target
          ? failed
            ? 'failed'
            : done
              ? 'current'
              : 'rolling'
          : failed
            ? 'rolled-back'
            : 'superseded';
      return {
        release: r.release,
        formpackId: r.formpackId,
        resources: r.resources,
        at: r.ts,
        by: addressOf(r.actor),
        op: r.op,
        rollbackOf: r.rollbackOf,
        result,
        failure: failed,
      };
    });
  return { target, failed: new Set(failure.keys()), releases };
}
