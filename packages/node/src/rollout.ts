// Rolling updates (issue 20), the per-node decision: may THIS node replace its replica of an older
// release now? Pure, from the state view alone, so every node reaches the same order without talking:
// the replicas still on an older Formpack are ranked (down ones first, then by node key) and only the
// first `maxUnavailable - inFlight` of them go, where inFlight counts replicas already on the target
// that are not yet available (running, and healthy when the Formpack has a HEALTHCHECK).
import type { InstanceView, ReplicaView } from '@formation/state';

export type RolloutTurn = { go: true; why: string } | { go: false; why: string };

/** The Formpack a release number stands for (release 1: the create), or undefined when unknown. */
export function formpackOfRelease(inst: InstanceView, release: number | null | undefined): string | undefined {
  if (release === null || release === undefined) return undefined;
  return inst.releases?.find((r) => r.release === release)?.formpackId;
}

/**
 * The release a VM of Formpack `formpackId` stands for: the target when it is the target's Formpack,
 * else the newest release of that Formpack, else undefined (a Formpack no release names).
 */
export function releaseOfFormpack(inst: InstanceView, formpackId: string): number | undefined {
  if (formpackId === inst.formpackId) return inst.release ?? 1;
  const rs = (inst.releases ?? []).filter((r) => r.formpackId === formpackId).map((r) => r.release);
  return rs.length ? Math.max(...rs) : undefined;
}

/** Is this replica on the target Formpack (by the release it reported)? */
export function onTarget(inst: InstanceView, r: ReplicaView): boolean {
  return formpackOfRelease(inst, r.release) === inst.formpackId;
}

/**
 * Available = serving the target: running, and — when the owner's publish has a HEALTHCHECK — reported
 * healthy by its node for the release it runs.
 */
export function available(inst: InstanceView, r: ReplicaView): boolean {
  if (r.state !== 'running' || !onTarget(inst, r)) return false;
  if (!inst.formpack?.service?.healthcheck) return true;
  return r.health?.status === 'healthy' && r.health.release === r.release;
}

/**
 * Whether node `me`, whose VM runs an older Formpack than the instance's target, replaces it now.
 * A node that lies (reports healthy when it is not) only speeds up its own turn and the next one; a
 * node that stays silent holds the roll-out until placement counts it out (heartbeat timeout) and its
 * replica is healed elsewhere; nobody can make another node's replica go early.
 *
 * @example rolloutTurn(inst, myKey, placeReplicas(inst, nodes)) // { go: false, why: 'waiting: …' }
 */
export function rolloutTurn(inst: InstanceView, me: string, placed?: readonly string[]): RolloutTurn {
  // Only replicas on nodes placement still counts (`placeReplicas`): a silent node's stale report
  // does not hold the roll-out once it is counted out.
  const assigned = inst.replicaSet.filter((r) => r.assigned && (!placed || placed.includes(r.node)));
  const mine = assigned.find((r) => r.node === me);
  if (!mine) return { go: true, why: 'not an assigned replica' };
  const inFlight = assigned.filter((r) => onTarget(inst, r) && !available(inst, r));
  const old = assigned
    .filter((r) => !onTarget(inst, r))
    .sort((a, b) => {
      const down = (r: ReplicaView) => (r.state === 'running' ? 1 : 0);
      return down(a) - down(b) || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0);
    });
  // This node's replica reports the target already (its VM was just replaced, the report came first).
  if (!old.some((r) => r.node === me)) return { go: true, why: 'already on the target release' };
  const slots = (inst.maxUnavailable ?? 1) - inFlight.length;
  const rank = old.findIndex((r) => r.node === me);
  if (rank < slots) return { go: true, why: `turn ${rank + 1} of ${old.length} replicas to update` };
  return {
    go: false,
    why:
      inFlight.length > 0
        ? `waiting: ${inFlight.length} replica(s) of release ${inst.release ?? 1} not yet available`
        : `waiting: ${rank} replica(s) go first`,
  };
}

/**
 * Whether the instance's latest committed revision applies to its target release: a revision is a
 * delta of the disk of the Formpack it was committed on, so one committed before the target release
 * (an older Formpack, or the same one before a rollback) is never laid over the target's disk.
 *
 * @example revisionBelongsHere({ ...inst, revisionAt: 5_000 }) // false when the target release is from 6_000
 */
export function revisionBelongsHere(inst: InstanceView): boolean {
  if (inst.revision === 0 || (inst.release ?? 1) === 1) return true;
  const target = inst.releases?.find((r) => r.release === inst.release);
  return !target || (inst.revisionAt ?? 0) >= target.at;
}
