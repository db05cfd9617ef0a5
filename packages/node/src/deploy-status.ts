import type { DeployStatus } from '@formation/interface';

/** The parts of a state InstanceView that status needs (kept structural so the CLI can use it on API JSON). */
export interface InstanceLike {
  replicas: number;
  deleted: boolean;
  replicaSet: Array<{ node: string; state: string | null; reason: string | null; formnetIp: string | null }>;
}

export interface DeploymentStatus {
  status: DeployStatus;
  /** For FAILURE: why, in words (seed 000: `FAILURE { reason }`). */
  reason?: string;
  running: number;
  wanted: number;
}

/**
 * The deployment status seed 000 shows for an instance: SUCCESS when the wanted replicas run
 * (the requested count, or the number of nodes when fewer exist), FAILURE with the replicas' reasons
 * when a replica failed and too few run, PENDING otherwise.
 */
export function deploymentStatus(inst: InstanceLike, nodeCount: number): DeploymentStatus {
  const wanted = Math.max(1, Math.min(inst.replicas, Math.max(1, nodeCount)));
  const running = inst.replicaSet.filter((r) => r.state === 'running').length;
  if (inst.deleted) return { status: 'FAILURE', reason: 'the instance was deleted', running, wanted };
  if (running >= wanted) return { status: 'SUCCESS', running, wanted };
  const failed = inst.replicaSet.filter((r) => r.state === 'failed');
  if (failed.length > 0 && failed.length + running >= wanted) {
    const reasons = [...new Set(failed.map((r) => r.reason ?? 'unknown reason'))];
    return { status: 'FAILURE', reason: reasons.join('; '), running, wanted };
  }
  return { status: 'PENDING', running, wanted };
}

/** How seed 000 prints it: `PENDING`, `SUCCESS` or `FAILURE { reason: <message> }`. */
export function formatDeploymentStatus(s: DeploymentStatus): string {
  return s.status === 'FAILURE' ? `FAILURE { reason: ${s.reason ?? 'unknown'} }` : s.status;
}
