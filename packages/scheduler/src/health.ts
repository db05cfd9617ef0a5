/** What node health needs from a state node view. */
export interface HeartbeatNode {
  id: string;
  heartbeat: { ts: number; status: string } | null;
}

/**
 * Whether a node counts as alive for placement: it beat within `timeoutMs` (by its own clock, as
 * recorded in its `node.heartbeat`) and is not draining. A node never counts itself out.
 *
 * @example isNodeHealthy(node, Date.now(), 30_000, myId)
 */
export function isNodeHealthy(node: HeartbeatNode, now: number, timeoutMs: number, self?: string): boolean {
  if (node.id === self) return true;
  const hb = node.heartbeat;
  return hb !== null && hb.status !== 'draining' && now - hb.ts <= timeoutMs;
}
