import { type KeyPair, sign } from '@formation/identity';
import { canonicalJson } from './canonical.ts';
import { verifyOpSignature } from './op.ts';
import type { NodeView } from './views.ts';

/**
 * Liveness without growing the log. A node says "I am alive" every few seconds with a signed
 * *presence* message gossiped to its peers; presence is kept in memory only (newest per node) and laid
 * over the views' `heartbeat`, so placement and status see a node as alive exactly as with heartbeat
 * ops — but nothing is stored or replayed, and a joining node does not download every beat since the
 * network began. `node.heartbeat` ops remain for durable records (start, status changes, and rarely).
 *
 * Signed bytes: the canonical JSON of `{ v, node, ts, status, used? }` prefixed by `FORM-PRESENCE-V1\n`.
 */
export interface Presence {
  v: 1;
  /** The node's compressed public key (its id in state). */
  node: string;
  /** The node's clock, ms. */
  ts: number;
  status: 'healthy' | 'degraded' | 'draining';
  used?: { vcpu: number; memMiB: number; diskGiB: number };
  sig: string;
}

const STATUSES = new Set(['healthy', 'degraded', 'draining']);

function presenceBytes(p: Omit<Presence, 'sig'>): string {
  const body: Record<string, unknown> = { v: p.v, node: p.node, ts: p.ts, status: p.status };
  if (p.used) body.used = p.used;
  return `FORM-PRESENCE-V1\n${canonicalJson(body)}`;
}

/** A presence message signed by the node key. */
export function signPresence(
  key: KeyPair,
  status: Presence['status'] = 'healthy',
  used?: Presence['used'],
  ts: number = Date.now(),
): Presence {
  const p = { v: 1 as const, node: key.publicKey, ts, status, ...(used ? { used } : {}) };
  return { ...p, sig: sign(key.privateKey, presenceBytes(p)) };
}

/** Why `p` is not a valid presence message at `now` (±`maxSkewMs`), or null. */
export function presenceProblem(p: unknown, now: number, maxSkewMs = 60_000): string | null {
  if (typeof p !== 'object' || p === null) return 'not an object';
  const x = p as Record<string, unknown>;
  const keys = Object.keys(x).filter((k) => k !== 'used');
  if (keys.sort().join(',') !== 'node,sig,status,ts,v') return 'must have exactly v, node, ts, status, sig (and used)';
  if (x.v !== 1) return 'unknown version';
  if (typeof x.node !== 'string' || !/^0[23][0-9a-f]{64}$/.test(x.node)) return 'node is not a public key';
  if (typeof x.ts !== 'number' || !Number.isSafeInteger(x.ts)) return 'ts is not a time in ms';
  if (typeof x.status !== 'string' || !STATUSES.has(x.status)) return 'unknown status';
  if (x.used !== undefined) {
    const u = x.used as Record<string, unknown>;
    if (
      typeof u !== 'object' ||
      u === null ||
      Object.keys(u).sort().join(',') !== 'diskGiB,memMiB,vcpu' ||
      !Object.values(u).every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
    ) {
      return 'used must be { vcpu, memMiB, diskGiB } counts';
    }
  }
  if (Math.abs((x.ts as number) - now) > maxSkewMs) return 'ts is too far from this clock';
  if (typeof x.sig !== 'string' || !verifyOpSignature(x.node, presenceBytes(x as unknown as Presence), x.sig)) {
    return 'signature does not verify for the node';
  }
  return null;
}

/** The newest presence per node, in memory. */
export class PresenceBook {
  private readonly latest = new Map<string, Presence>();

  /**
   * Keep `p` if it is valid and newer than what we hold for its node. Returns `accepted` (new
   * information, worth forwarding), `stale` (valid but not newer) or the problem.
   */
  record(p: unknown, now: number = Date.now()): 'accepted' | 'stale' | { problem: string } {
    const problem = presenceProblem(p, now);
    if (problem) return { problem };
    const x = p as Presence;
    const cur = this.latest.get(x.node);
    if (cur && cur.ts >= x.ts) return 'stale';
    this.latest.set(x.node, x);
    return 'accepted';
  }

  get(node: string): Presence | undefined {
    return this.latest.get(node);
  }

  forget(node: string): void {
    this.latest.delete(node);
  }

  /** `nodes` with each heartbeat replaced by the node's presence when that is newer. */
  overlay(nodes: NodeView[]): NodeView[] {
    if (this.latest.size === 0) return nodes;
    return nodes.map((n) => {
      const p = this.latest.get(n.id);
      if (!p || (n.heartbeat && n.heartbeat.ts >= p.ts)) return n;
      return { ...n, heartbeat: { ts: p.ts, status: p.status, used: p.used ?? n.heartbeat?.used ?? null } };
    });
  }
}

/** The gossip topic presence messages travel on. */
export const PRESENCE_TOPIC = 'formation/presence/1';
