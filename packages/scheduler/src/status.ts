import type { DeployStatus, GpuRequest } from '@formation/interface';
import { explainUnplaceable, OVER_QUOTA, type PlacementNode, placeReplicas } from './placement.ts';

/** The parts of a state InstanceView that status needs (kept structural so the CLI can use it on API JSON). */
export interface InstanceLike {
  id: string;
  replicas: number;
  resources: { vcpu: number; memMiB: number; diskGiB: number };
  deleted: boolean;
  /** Over its owner's quota (decided by state): runs nowhere. */
  overQuota?: boolean | undefined;
  /** The GPUs each replica needs, or null. */
  gpu?: GpuRequest | null | undefined;
  replicaSet: Array<{ node: string; state: string | null; reason: string | null; formnetIp: string | null }>;
}

export interface DeploymentStatus {
  status: DeployStatus;
  /** For FAILURE: why, in words (seed 000: `FAILURE { reason }`); for PENDING: why it cannot be placed yet (GPU). */
  reason?: string;
  running: number;
  wanted: number;
}

/**
 * The deployment status seed 000 shows for an instance: SUCCESS when the wanted replicas run
 * (the requested count, or the number of nodes when fewer exist), FAILURE with the replicas' reasons
 * when a replica failed and too few run — or when no node can ever hold it (with the numbers) —
 * PENDING otherwise. Give `nodes` (their capacity) to detect the unplaceable case; a count alone
 * only sizes `wanted`.
 */
export function deploymentStatus(inst: InstanceLike, nodes: number | readonly PlacementNode[]): DeploymentStatus {
  // A GPU instance wants as many replicas as there are nodes that could hold one (at least 1).
  const gpuNodes = inst.gpu && typeof nodes !== 'number' ? placeReplicas({ ...inst, replicas: 16 }, nodes) : undefined;
  const nodeCount = gpuNodes ? gpuNodes.length : typeof nodes === 'number' ? nodes : nodes.length;
  const wanted = Math.max(1, Math.min(inst.replicas, Math.max(1, nodeCount)));
  // A replica counts as running only while its node is healthy (when the caller says which are not):
  // a dead node's last report stays `running` in state.
  const down = new Set(typeof nodes === 'number' ? [] : nodes.filter((n) => !n.healthy).map((n) => n.id));
  const running = inst.replicaSet.filter((r) => r.state === 'running' && !down.has(r.node)).length;
  if (inst.deleted) return { status: 'FAILURE', reason: 'the instance was deleted', running, wanted };
  if (inst.overQuota ?? false) return { status: 'FAILURE', reason: OVER_QUOTA, running, wanted };
  if (running >= wanted) return { status: 'SUCCESS', running, wanted };
  // No node can hold its GPUs: it waits for one (a GPU node may join), saying why.
  if (gpuNodes?.length === 0)
    return { status: 'PENDING', reason: explainUnplaceable(inst, nodes as PlacementNode[]), running, wanted };
  const failed = inst.replicaSet.filter((r) => r.state === 'failed');
  if (failed.length > 0 && failed.length + running >= wanted) {
    const reasons = [...new Set(failed.map((r) => r.reason ?? 'unknown reason'))];
    // A GPU replica that failed on a node is placed on another GPU node (placement skips the first).
    if (gpuNodes)
      return { status: 'PENDING', reason: `healing on another GPU node: ${reasons.join('; ')}`, running, wanted };
    return { status: 'FAILURE', reason: reasons.join('; '), running, wanted };
  }
  if (typeof nodes !== 'number' && inst.replicaSet.length === 0 && placeReplicas(inst, nodes).length === 0) {
    return { status: 'FAILURE', reason: explainUnplaceable(inst, nodes), running, wanted };
  }
  return { status: 'PENDING', running, wanted };
}

/** The VM that carries an instance's replica on a node is found by name: stable across daemon restarts. */
export function vmNameFor(inst: { id: string; name: string }): string {
  return `${inst.name.slice(0, 56).replace(/-+$/, '')}-${inst.id.slice(0, 6)}`;
}

/** How seed 000 prints it: `PENDING`, `SUCCESS` or `FAILURE { reason: <message> }`. */
export function formatDeploymentStatus(s: DeploymentStatus): string {
  if (s.status === 'FAILURE') return `FAILURE { reason: ${s.reason ?? 'unknown'} }`;
  return s.status === 'PENDING' && s.reason ? `PENDING { reason: ${s.reason} }` : s.status;
}
