import { sha256Hex } from '@formation/identity';
import {
  describeGpuRequest,
  type GpuDevice,
  type GpuRequest,
  type Resources,
  usableGpuCount,
} from '@formation/interface';

/** What placement needs to know about a node. */
export interface PlacementNode {
  id: string;
  capacity: Resources;
  /** Resources already committed to instances placed on this node. */
  used: Resources;
  healthy: boolean;
  /** The GPUs the node reports (its node record); absent: none. */
  gpus?: readonly Pick<GpuDevice, 'vendor' | 'passthrough'>[] | undefined;
}

/** What placement needs to know about an instance. */
export interface PlacementInstance {
  id: string;
  replicas: number;
  resources: Resources;
  /** Over its owner's quota (decided by state): never placed. Absent on views that predate quotas. */
  overQuota?: boolean | undefined;
  /** The GPUs each replica needs (Formfile `GPU`); absent or null: none. */
  gpu?: GpuRequest | null | undefined;
  /** Its replicas as state shows them: a GPU replica that failed on a node is not placed there again. */
  replicaSet?: ReadonlyArray<{ node: string; state: string | null }> | undefined;
}

/**
 * Whether a node can hold a replica's GPUs: enough passthrough-capable GPUs of the requested vendor, and
 * not a node where this instance's replica already failed. A node's GPUs are its own claim; one that lied
 * (or whose GPU cannot be passed through after all) fails the boot, and the replica is healed elsewhere.
 */
export function gpuFits(n: PlacementNode, inst: PlacementInstance): boolean {
  const req = inst.gpu;
  if (!req) return true;
  if (inst.replicaSet?.some((r) => r.node === n.id && r.state === 'failed')) return false;
  return usableGpuCount(n.gpus ?? [], req) >= req.count;
}

function fits(n: PlacementNode, r: Resources): boolean {
  return (
    n.capacity.vcpu - n.used.vcpu >= r.vcpu &&
    n.capacity.memMiB - n.used.memMiB >= r.memMiB &&
    n.capacity.diskGiB - n.used.diskGiB >= r.diskGiB
  );
}

/** Why an over-quota instance runs nowhere. */
export const OVER_QUOTA = "the instance is over its owner's quota: delete another instance or ask for a larger quota";

/** Rendezvous (highest random weight) score of a node for an instance: same inputs, same order, on every node. */
export function rendezvousScore(instanceId: string, nodeId: string): string {
  return sha256Hex(`formation-placement\n${instanceId}\n${nodeId}`);
}

/**
 * Which nodes run an instance's replicas (none when it is over quota): the healthy nodes that fit its resources, ordered by
 * rendezvous score, the first `replicas` of them (fewer when fewer fit), never two on one node.
 * Every node computes this from the same state and gets the same answer without a leader; adding or
 * removing a node moves only the replicas whose top choices changed.
 *
 * @example placeReplicas({ id, replicas: 3, resources }, nodes) // ['node-b', 'node-a', 'node-d']
 */
export function placeReplicas(instance: PlacementInstance, nodes: readonly PlacementNode[]): string[] {
  if (instance.overQuota ?? false) return [];
  const candidates = nodes.filter((n) => n.healthy && fits(n, instance.resources) && gpuFits(n, instance));
  return candidates
    .map((n) => ({ id: n.id, score: rendezvousScore(instance.id, n.id) }))
    .sort((a, b) => (a.score < b.score ? 1 : a.score > b.score ? -1 : a.id < b.id ? -1 : 1))
    .slice(0, Math.max(0, instance.replicas))
    .map((c) => c.id);
}

/** Why an instance cannot be placed at all: the largest free resources among healthy nodes vs what it asks. */
export function explainUnplaceable(instance: PlacementInstance, nodes: readonly PlacementNode[]): string {
  if (instance.overQuota ?? false) return OVER_QUOTA;
  const healthy = nodes.filter((n) => n.healthy);
  if (healthy.length === 0) return 'no healthy node is available';
  if (instance.gpu && !healthy.some((n) => gpuFits(n, instance))) return explainNoGpu(instance, healthy);
  const free = healthy.map((n) => ({
    vcpu: n.capacity.vcpu - n.used.vcpu,
    memMiB: n.capacity.memMiB - n.used.memMiB,
    diskGiB: n.capacity.diskGiB - n.used.diskGiB,
  }));
  const max = {
    vcpu: Math.max(...free.map((f) => f.vcpu)),
    memMiB: Math.max(...free.map((f) => f.memMiB)),
    diskGiB: Math.max(...free.map((f) => f.diskGiB)),
  };
  const r = instance.resources;
  const short: string[] = [];
  if (r.vcpu > max.vcpu) short.push(`${r.vcpu} vCPU requested, at most ${max.vcpu} free`);
  if (r.memMiB > max.memMiB) short.push(`${r.memMiB} MiB memory requested, at most ${max.memMiB} MiB free`);
  if (r.diskGiB > max.diskGiB) short.push(`${r.diskGiB} GiB disk requested, at most ${max.diskGiB} GiB free`);
  return short.length ? `no node has room: ${short.join('; ')}` : 'no single node has room for all of it at once';
}

/** Why no healthy node can hold a GPU instance: what it asks, what the nodes report, where it failed. */
function explainNoGpu(instance: PlacementInstance, healthy: readonly PlacementNode[]): string {
  const req = instance.gpu as GpuRequest;
  const withGpus = healthy.filter((n) => (n.gpus?.length ?? 0) > 0);
  const failedOn = healthy.filter(
    (n) => usableGpuCount(n.gpus ?? [], req) >= req.count && !gpuFits(n, instance),
  ).length;
  const parts = [`no healthy node has ${describeGpuRequest(req)} that can be passed through to a VM (VFIO)`];
  if (withGpus.length === 0) parts.push('no node reports a GPU');
  else {
    const usable = withGpus.filter((n) => usableGpuCount(n.gpus ?? [], req) > 0).length;
    parts.push(`${withGpus.length} node(s) report GPUs, ${usable} with a usable one of that kind`);
  }
  if (failedOn > 0) parts.push(`its replica failed to boot on ${failedOn} GPU node(s)`);
  return `${parts.join('; ')}: it stays pending until such a node joins`;
}
