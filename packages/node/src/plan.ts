import type { ReportedReplicaState } from '@formation/interface';
import { type PlacementNode, placeReplicas } from '@formation/scheduler';
import type { InstanceView, ReplicaView } from '@formation/state';
import type { VmView } from '@formation/vmm';
import { revisionBelongsHere, rolloutTurn } from './rollout.ts';

/** How long an entrypoint must run after boot before its replica counts as running (ms). */
export const ENTRYPOINT_SETTLE_MS = 2000;
/** How long to wait before fetching a revision again after a failed fetch or apply (ms). */
export const REVISION_RETRY_MS = 10_000;
/** Why a replica that is no longer placed here stops. */
export const MOVED = 'replica moved: this node is no longer placed for it';
/** Why a replica of an instance over its owner's quota stops. */
export const OVER_QUOTA_STOP = "the instance is over its owner's quota";

/** An instance as planning reads it: the state view, with `overQuota` once state sets it. */
export type PlanInstance = InstanceView & { overQuota?: boolean | undefined };

/** Everything one decision about one instance on this node depends on. No I/O behind any of it. */
export interface PlanInput {
  instance: PlanInstance;
  /** This node's public key. */
  me: string;
  /** The placement input (`placementNodesFrom`), built once per round. */
  nodes: readonly PlacementNode[];
  /** This node's VM of the instance (found by `vmNameFor`), if any. */
  vm: VmView | undefined;
  now: number;
  /** An action on this instance is still running on this node. */
  busy?: boolean;
  /** When booting or starting its VM last failed here (ms), and how long to wait before trying again. */
  failedAt?: number | undefined;
  retryAfterMs: number;
  /** When fetching or applying its latest revision last failed here (ms). */
  revisionFailedAt?: number | undefined;
  /** The revision this node fetched and applied to the VM (one it did not commit itself). */
  applied?: { revision: number; sha256: string } | undefined;
  /** Whether the Formpack defines an ENTRYPOINT (then running means the app runs, not only the VM). */
  hasEntrypoint: boolean;
  /** Whether this node keeps revisions (a data dir): without one it never fetches them. */
  canFetchRevisions: boolean;
  /** The release this node's VM stands for (rollout.ts `releaseOfFormpack`); re-reported when it changes. */
  vmRelease?: number | undefined;
  /** How long this node has seen no traffic on the VM (`idleSince`), undefined when not measurable. */
  idleMs?: number | undefined;
  /** Length of an autostop minute in ms (tests shorten it; default 60 000). */
  minuteMs?: number | undefined;
  /**
   * How long a VM may take from its start to ready (ms). The boot action waits that long itself; this is
   * for a VM no action waits for (the node restarted while it booted): past it, the replica is failed.
   */
  readyTimeoutMs?: number | undefined;
}

/** Why a replica failed whose VM did not become ready in time with no boot action waiting for it. */
export function neverReadyReason(vm: Pick<VmView, 'state' | 'startedAt'>, readyTimeoutMs: number): string {
  return (
    `its VM did not become ready within ${Math.round(readyTimeoutMs / 1000)} s of its start at ${vm.startedAt} ` +
    `(it is ${vm.state}; the node restarted while it booted, so no boot waited for it). Its console shows ` +
    'how far it got (GET /vms/<id>/console on the node); `form manage stop` then `form manage start` boots it again'
  );
}

/** What to do about one instance: a closed set, carried out by the controller's executor. */
export type Action =
  | { kind: 'nothing'; why: string }
  /** Record `instance.claim` for this node. */
  | { kind: 'claim' }
  /** Record `instance.status` (revision: the replica's own when absent). */
  | { kind: 'report'; state: ReportedReplicaState; reason?: string; formnetIp?: string; revision?: number }
  /** Destroy the VM, then report `deleted` (instance deleted) or `stopped` with the reason. */
  | { kind: 'remove'; vmId: string; report: 'deleted' | 'stopped' | 'failed'; reason?: string }
  /** Destroy a VM of an older Formpack (a new one boots next round). */
  | { kind: 'replace-formpack'; vmId: string }
  /** Stop the VM (disk kept), then report `stopped`. */
  | { kind: 'stop'; vmId: string; reason?: string }
  /** Start the existing VM again (its disk keeps what was written); in the background. */
  | { kind: 'restart'; vmId: string }
  /** Fetch the Formpack (and latest revision) when missing, create and start a VM; in the background. */
  | { kind: 'boot' }
  /** Fetch the instance's latest revision and swap it into the VM; in the background. */
  | { kind: 'apply-revision'; vmId: string }
  /** The entrypoint keeps exiting: report failed with its log. */
  | { kind: 'fail-entrypoint'; vmId: string; code: number; restarts: number }
  /** Ask the VMM for a health round now (the entrypoint's settle time passed without a check). */
  | { kind: 'check-health' }
  /** Scale to zero: suspend the idle VM to disk, then report `suspended` (its next connection wakes it). */
  | { kind: 'suspend'; vmId: string }
  /** The owner asked to start it (`form manage start`) after it was suspended: resume it now. */
  | { kind: 'wake'; vmId: string };

/** The replica this node holds for an instance, if it claimed one. */
export function myReplica(inst: InstanceView, me: string): ReplicaView | undefined {
  return inst.replicaSet.find((r) => r.node === me);
}

const nothing = (why: string): Action => ({ kind: 'nothing', why });
const active = (state: string | null | undefined): boolean =>
  state === 'running' || state === 'starting' || state === 'suspended';

/**
 * Decide what this node does next about one instance: the whole reconcile decision, pure. In order:
 * a deleted instance loses its VM; one over quota stops; one not placed here goes (surplus after a
 * stand-in); placed but unclaimed is claimed; a VM of an older Formpack is replaced; desired `stopped`
 * stops; a VM that is down is started again and a missing one booted (after a failure, only once the
 * back-off passed); a running VM is observed (entrypoint, revision, reported state).
 *
 * @example plan({ instance, me, nodes, vm, now: Date.now(), retryAfterMs: 60_000, hasEntrypoint, canFetchRevisions })
 */
export function plan(i: PlanInput): Action {
  const inst = i.instance;
  if (i.busy) return nothing('an action on it is running');
  const vm = i.vm;
  const mine = myReplica(inst, i.me);
  if (inst.deleted) {
    if (vm) return { kind: 'remove', vmId: vm.id, report: 'deleted' };
    if (mine && mine.state !== 'deleted') return { kind: 'report', state: 'deleted' };
    return nothing('deleted, nothing left here');
  }
  if (inst.overQuota ?? false) {
    // Never placed nor booted; a VM from before keeps its disk (stopped, not destroyed).
    if (vm && (vm.state === 'running' || vm.state === 'paused'))
      return { kind: 'stop', vmId: vm.id, reason: OVER_QUOTA_STOP };
    if (mine && (active(mine.state) || mine.state === 'failed'))
      return { kind: 'report', state: 'stopped', reason: OVER_QUOTA_STOP };
    return nothing('over quota');
  }
  if (!placeReplicas(inst, i.nodes).includes(i.me)) {
    // Not (or no longer) one of this instance's nodes, e.g. its usual node came back after this one
    // stood in for it: the surplus replica goes, and says so.
    if (vm) {
      if (mine?.state === 'failed' && inst.gpu)
        return { kind: 'remove', vmId: vm.id, report: 'failed', reason: mine.reason ?? MOVED };
      return { kind: 'remove', vmId: vm.id, report: 'stopped', reason: MOVED };
    }
    // A GPU replica that failed here stays `failed`: that is what keeps placement from coming back.
    const keepFailed = mine?.state === 'failed' && Boolean(inst.gpu);
    if (mine && (active(mine.state) || (mine.state === 'failed' && !keepFailed)))
      return { kind: 'report', state: 'stopped', reason: MOVED };
    return nothing('not placed here');
  }
  if (!mine) return { kind: 'claim' };
  if (vm && vm.source.kind === 'formpack' && vm.source.id !== inst.formpackId) {
    // Shipped a new Formpack under the same name (or rolled back): a rolling update replaces the VM
    // when it is this replica's turn (rollout.ts); until then the old one keeps serving.
    if (rolloutTurn(inst, i.me, placeReplicas(inst, i.nodes)).go) return { kind: 'replace-formpack', vmId: vm.id };
  }
  if (inst.desired === 'stopped') {
    if (vm && (vm.state === 'running' || vm.state === 'paused' || vm.state === 'suspended'))
      return { kind: 'stop', vmId: vm.id };
    if (mine.state !== 'stopped') return { kind: 'report', state: 'stopped' };
    return nothing('stopped as desired');
  }
  const backingOff = i.failedAt !== undefined && i.failedAt !== 0 && i.now - i.failedAt < i.retryAfterMs;
  if (vm && (vm.state === 'stopped' || vm.state === 'created' || vm.state === 'crashed')) {
    // Desired running but the VM is down (started again by its owner, the node restarted, or it
    // crashed): boot the same VM, so its disk keeps what was written and committed.
    return backingOff ? nothing('backing off after a failed start') : { kind: 'restart', vmId: vm.id };
  }
  if (!vm) return backingOff ? nothing('backing off after a failed boot') : { kind: 'boot' };
  if (vm.state === 'suspended') {
    // `form manage start` after it was suspended (both times are their authors' clocks: a start
    // from an owner whose clock is far behind waits for the next connection instead).
    if (mine.state === 'suspended' && (inst.wakeAt ?? 0) > (mine.ts ?? Number.MAX_SAFE_INTEGER))
      return { kind: 'wake', vmId: vm.id };
    if (mine.state === 'suspended') return nothing('suspended until its next connection');
    const report: Action = { kind: 'report', state: 'suspended', reason: 'idle: suspended to disk' };
    const ip = ipOf(vm);
    if (ip) report.formnetIp = ip;
    return report;
  }
  return observe(i, vm, mine);
}

/** Keep the reported status in line with a VM that exists: ready -> running, a dead entrypoint -> failed. */
function observe(i: PlanInput, vm: VmView, mine: ReplicaView): Action {
  const inst = i.instance;
  if (!vm.ready && (vm.state === 'running' || vm.state === 'paused') && i.readyTimeoutMs !== undefined) {
    const since = Date.parse(vm.startedAt ?? '');
    if (since && i.now - since > i.readyTimeoutMs) {
      if (mine.state === 'failed') return nothing('failed: its VM never became ready');
      return { kind: 'report', state: 'failed', reason: neverReadyReason(vm, i.readyTimeoutMs) };
    }
  }
  if (!vm.ready || (vm.state !== 'running' && vm.state !== 'paused')) return nothing('its VM is not ready');
  const ep = vm.health?.entrypoint;
  if (ep?.status === 'exited' && ep.restarts >= 3) {
    if (mine.state === 'failed') return nothing('failed: the entrypoint keeps exiting');
    return { kind: 'fail-entrypoint', vmId: vm.id, code: ep.code, restarts: ep.restarts };
  }
  // Running means the app runs, not only the VM: with an ENTRYPOINT, wait until the guest reports it
  // running without having restarted (a crash loop ends as failed above instead). "Running" must hold
  // for a moment: a crashing entrypoint looks running right after boot.
  // The guest says how long its entrypoint has run (it starts before the VM is ready: the app first,
  // the keys beside it); from an older guest that does not, count from ready.
  if (i.hasEntrypoint && mine.state !== 'running') {
    const readyAt = Date.parse(vm.readyAt ?? '') || i.now;
    const checkedAt = Date.parse(vm.health?.checkedAt ?? '') || 0;
    const checked = checkedAt >= readyAt;
    const ranMs = ep?.status === 'running' ? (ep.runningForMs ?? checkedAt - readyAt) : 0;
    const stable = checked && ep?.status === 'running' && ep.restarts === 0 && ranMs >= ENTRYPOINT_SETTLE_MS;
    if (!stable) {
      // Ask for a check when one now can decide: at once when not checked since ready (the app may
      // have run long enough already), or when one that saw it settling is due.
      const dueAt = !checked
        ? readyAt
        : ep?.status === 'running' && ep.restarts === 0 && ranMs < ENTRYPOINT_SETTLE_MS
          ? checkedAt + ENTRYPOINT_SETTLE_MS - ranMs
          : Number.POSITIVE_INFINITY;
      if (i.now >= dueAt) return { kind: 'check-health' };
      return nothing('waiting for the entrypoint to settle');
    }
  }
  // Scale to zero: a replica reported running whose VM saw no traffic for its autostop time sleeps.
  const idleFor = (inst.autostopMinutes ?? 0) * (i.minuteMs ?? 60_000);
  if (idleFor > 0 && vm.state === 'running' && mine.state === 'running' && (i.idleMs ?? -1) >= idleFor) {
    return { kind: 'suspend', vmId: vm.id };
  }
  // The replica is at the instance's revision when its own disk produced that commit, or when it
  // fetched and applied it. Otherwise it fetches the revision from a replica that is at it.
  // A revision committed before the target release is a delta of an older Formpack's disk: not applied.
  const atRevision =
    inst.revision === 0 ||
    !revisionBelongsHere(inst) ||
    vm.revisions.some((r) => r.sha256 === inst.revisionHash) ||
    i.applied?.sha256 === inst.revisionHash;
  if (!atRevision && inst.revisionHash && i.canFetchRevisions) {
    const failed = i.revisionFailedAt;
    if (!failed || i.now - failed > REVISION_RETRY_MS) return { kind: 'apply-revision', vmId: vm.id };
  }
  const revision = !revisionBelongsHere(inst)
    ? 0
    : atRevision
      ? inst.revision
      : (i.applied?.revision ?? mine.revision ?? 0);
  const ip = ipOf(vm);
  const releaseChanged = i.vmRelease !== undefined && (mine.release ?? undefined) !== i.vmRelease;
  if (mine.state !== 'running' || mine.formnetIp !== ip || mine.revision !== revision || releaseChanged) {
    const report: Action = { kind: 'report', state: 'running', revision };
    if (ip) report.formnetIp = ip;
    return report;
  }
  return nothing('running as reported');
}

/**
 * Before the node stops its VMs (`form node down`): which instances must say their replica stopped,
 * so status never shows a replica as running while its node is down.
 */
export function planNodeStopped(instances: readonly InstanceView[], me: string): InstanceView[] {
  return instances.filter((inst) => !inst.deleted && active(myReplica(inst, me)?.state));
}

/**
 * A connection arrived for this node's suspended VM of `inst` (scale to zero): wake it unless the owner
 * no longer wants it running here (deleted, stopped, over quota, not its replica). Pure.
 *
 * @example planWake(inst, me, vm) // { wake: true }
 */
export function planWake(
  inst: PlanInstance | undefined,
  me: string,
  vm: VmView | undefined,
): { wake: true } | { wake: false; why: string } {
  if (!inst) return { wake: false, why: 'no instance has this VM' };
  if (inst.deleted) return { wake: false, why: 'the instance is deleted' };
  if (inst.overQuota ?? false) return { wake: false, why: OVER_QUOTA_STOP };
  if (inst.desired !== 'running') return { wake: false, why: 'its owner stopped it' };
  if (!myReplica(inst, me)) return { wake: false, why: 'this node holds no replica of it' };
  if (vm?.state !== 'suspended') return { wake: false, why: `its VM is ${vm?.state ?? 'gone'}, not suspended` };
  return { wake: true };
}

/**
 * Idle tracking from a VM's traffic counters (pure): the time of the last change, which a first sample
 * or a change of the counters moves to `now`. `idleMs` for `plan` is `now - since`.
 *
 * @example idleSince(undefined, { rxBytes: 10, txBytes: 5 }, 1000) // { bytes: 15, since: 1000 }
 */
export function idleSince(
  prev: { bytes: number; since: number } | undefined,
  counters: { rxBytes: number; txBytes: number },
  now: number,
): { bytes: number; since: number } {
  const bytes = counters.rxBytes + counters.txBytes;
  return prev && prev.bytes === bytes ? prev : { bytes, since: now };
}

/** The VM's formnet address (TAP networking only; user-mode VMs have none). */
export function ipOf(vm: VmView): string | undefined {
  const ip = vm.network.ip?.split('/')[0];
  return ip && /^\d+\.\d+\.\d+\.\d+$/.test(ip) && vm.network.mode === 'tap' ? ip : undefined;
}
