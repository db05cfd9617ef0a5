// Replica health reported in state (issues 19/20), the pure half: which of this node's replicas it
// checks, and when a prober verdict becomes a signed `instance.health` op. The probing (sockets, the
// guest agent) is in replica-health.ts; the health state machine itself is @formation/ingress `nextHealth`.
import type { HealthcheckSpec } from '@formation/interface';
import type { InstanceView, ReplicaHealthView } from '@formation/state';
import type { VmView } from '@formation/vmm';
import { ipOf } from './plan.ts';
import { releaseOfFormpack } from './rollout.ts';

/** One replica this node checks: its own, on a ready VM, of an instance whose owner published a HEALTHCHECK. */
export interface HealthTarget {
  /** Prober key: instance, release and VM, so a replaced VM starts again from `starting`. */
  key: string;
  instanceId: string;
  release: number;
  vmId: string;
  /** The VM's formnet address (HTTP/TCP checks go there over the node's bridge), or null (user-mode VM). */
  address: string | null;
  /** When the VM became ready (ms): the start period counts from here. */
  startedAt: number;
  spec: HealthcheckSpec;
}

/** What this node's checks say about a replica now. */
export interface ObservedHealth {
  status: 'starting' | 'healthy' | 'unhealthy';
  reason: string | null;
}

/** Longest reason recorded (the op allows 200 printable ASCII characters). */
export const MAX_HEALTH_REASON = 160;

/**
 * A check's detail as it may go into a signed op and onto a terminal: printable ASCII only (anything
 * else, escapes included, becomes `?`), whitespace runs folded, at most MAX_HEALTH_REASON characters.
 *
 * @example safeReason('exit 1: \u001b[31mboom\n') // 'exit 1: ?[31mboom'
 */
export function safeReason(s: string): string {
  return s
    .replace(/\s+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim()
    .slice(0, MAX_HEALTH_REASON);
}

/**
 * The replicas this node checks: for each live, running-desired instance with a HEALTHCHECK in its
 * owner's publish, this node's assigned replica when its VM (by name) is running and ready. HTTP and
 * TCP checks need the VM's formnet address; CMD checks run through the guest agent and need none.
 *
 * @example healthTargets(store.views().instances, nodeKey.publicKey, vmm.list(), vmNameFor)
 */
export function healthTargets(
  instances: readonly InstanceView[],
  me: string,
  vms: readonly VmView[],
  vmNameFor: (inst: InstanceView) => string,
): HealthTarget[] {
  const out: HealthTarget[] = [];
  for (const inst of instances) {
    const spec = inst.formpack?.service?.healthcheck;
    if (!spec || inst.deleted || inst.desired !== 'running' || inst.overQuota) continue;
    const mine = inst.replicaSet.find((r) => r.node === me);
    if (!mine?.assigned) continue;
    const vm = vms.find((v) => v.name === vmNameFor(inst));
    if (!vm || !vm.ready || vm.state !== 'running' || vm.source.kind !== 'formpack') continue;
    const release = releaseOfFormpack(inst, vm.source.id);
    if (release === undefined) continue;
    const address = ipOf(vm) ?? null;
    if (spec.test.type !== 'cmd' && !address) continue;
    out.push({
      key: `${inst.id}/${release}/${vm.id}`,
      instanceId: inst.id,
      release,
      vmId: vm.id,
      address,
      startedAt: Date.parse(vm.readyAt ?? '') || Date.parse(vm.createdAt) || 0,
      spec,
    });
  }
  return out;
}

/**
 * Whether to sign a new `instance.health`: the verdict or the release differs from what state holds
 * for this replica. Reasons alone do not trigger a report (a flapping detail is not worth an op).
 *
 * @example healthReportDue(null, { status: 'starting', reason: null }, 2) // true
 */
export function healthReportDue(
  reported: ReplicaHealthView | null | undefined,
  observed: ObservedHealth,
  release: number,
): boolean {
  if (!reported) return true;
  return reported.status !== observed.status || reported.release !== release;
}
