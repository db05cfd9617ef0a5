import type { GpuDevice, Resources } from '@formation/interface';
import type { PlacementNode } from './placement.ts';

/** What node health needs from a state node view. */
export interface HeartbeatNode {
  id: string;
  heartbeat: { ts: number; status: string } | null;
}

/**
 * How far a heartbeat's ts may lie ahead of our clock (ms). Clocks drift a little; a ts further ahead
 * is no proof of liveness (a forged far-future beat would otherwise keep a dead node placed forever).
 */
export const MAX_HEARTBEAT_SKEW_MS = 60_000;

/**
 * Whether a node counts as alive for placement: it beat within `timeoutMs` (by its own clock, as
 * recorded in its `node.heartbeat`, at most `MAX_HEARTBEAT_SKEW_MS` ahead of ours) and is not
 * draining. A node never counts itself out.
 *
 * @example isNodeHealthy(node, Date.now(), 30_000, myId)
 */
export function isNodeHealthy(node: HeartbeatNode, now: number, timeoutMs: number, self?: string): boolean {
  if (node.id === self) return true;
  const hb = node.heartbeat;
  return hb !== null && hb.status !== 'draining' && now - hb.ts <= timeoutMs && hb.ts - now <= MAX_HEARTBEAT_SKEW_MS;
}

/** What placement input needs from a state node view. */
export interface CapacityNode extends HeartbeatNode {
  capacity: Resources;
  gpus?: readonly GpuDevice[] | undefined;
}

/**
 * The placement input from the state's node list (one place for it: the node's controller, the
 * dashboard and status all place by the same rule). Health is `isNodeHealthy`; `self` (the node
 * asking) always counts; `used` is zero (placement is by capacity, as every node computes it alike).
 *
 * @example placeReplicas(inst, placementNodesFrom(views.nodes, Date.now(), 30_000, me))
 */
export function placementNodesFrom(
  nodes: readonly CapacityNode[],
  now: number,
  timeoutMs: number,
  self?: string,
): PlacementNode[] {
  return nodes.map((n) => ({
    id: n.id,
    capacity: n.capacity,
    used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
    healthy: isNodeHealthy(n, now, timeoutMs, self),
    ...(n.gpus?.length ? { gpus: n.gpus } : {}),
  }));
}
