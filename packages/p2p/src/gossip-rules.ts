import type { PeerCounters } from './limits.ts';
import { type ApplyResult, clockDependent, isOp, type Op, refHash } from './op-store.ts';
import type { P2PStats } from './stats.ts';

/**
 * The pure half of gossip validation: what a received message is worth and what it is counted as.
 * The adapters (`ops-gossip.ts`, `channels.ts`) map a verdict to gossipsub's `TopicValidatorResult`:
 * `accept` forwards the message, `reject` drops it and scores the sender down, `ignore` drops it quietly.
 */
export type GossipVerdict = 'accept' | 'reject' | 'ignore';

/**
 * The op a gossip message carries, or undefined when it is not one (too large, not JSON, no `hash`):
 * such a message is rejected before the store sees it.
 *
 * @example decodeGossipOp(new TextEncoder().encode('{"hash":"h"}'), 1024) // { hash: 'h' }
 */
export function decodeGossipOp(data: Uint8Array, maxOpBytes: number): Op | undefined {
  if (data.length > maxOpBytes) return undefined;
  let op: unknown;
  try {
    op = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
  return isOp(op) ? op : undefined;
}

export interface ApplyVerdict {
  verdict: GossipVerdict;
  /** The op waits for parents this node lacks: anti-entropy with the sender fetches them. */
  syncSender: boolean;
}

/**
 * The verdict on a gossiped op from the store's answer to applying it alone. Any rejection is this
 * op's (a store may report the hash it computed, not the claimed one); one refused only because of
 * this node's clock is ignored, so the relay is not penalised for it.
 *
 * @example verdictOfApply({ accepted: ['h'], rejected: [], pending: [] }, 'h') // { verdict: 'accept', syncSender: false }
 */
export function verdictOfApply(r: ApplyResult, hash: string): ApplyVerdict {
  if (r.rejected.length > 0) {
    return { verdict: r.rejected.every(clockDependent) ? 'ignore' : 'reject', syncSender: false };
  }
  if (r.accepted.some((x) => refHash(x) === hash)) return { verdict: 'accept', syncSender: false };
  return { verdict: 'ignore', syncSender: r.pending.some((x) => refHash(x) === hash) };
}

/** Count the verdict on a gossiped op, node-wide and for the peer that sent it. */
export function countOpVerdict(stats: P2PStats, counters: PeerCounters, verdict: GossipVerdict): void {
  if (verdict === 'accept') {
    stats.gossipAccepted++;
    counters.accepted++;
  } else if (verdict === 'reject') {
    stats.gossipRejected++;
    counters.rejected++;
  } else {
    stats.gossipIgnored++;
    counters.ignored++;
  }
}
