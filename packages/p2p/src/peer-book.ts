import { DEFAULT_LIMITS, type PeerCounters, type PeerLimits, TokenBucket } from './limits.ts';

/** What a node keeps about one peer: its counters and the token buckets that bound its work. */
export interface PeerState {
  counters: PeerCounters;
  /** Gossiped messages validated (ops and channel messages share it). */
  ops: TokenBucket;
  /** Ops served by anti-entropy. */
  syncOps: TokenBucket;
  /** Anti-entropy requests answered. */
  syncRequests: TokenBucket;
}

/** Peers remembered in the per-peer counters and buckets (least recently seen forgotten first). */
export const MAX_TRACKED_PEERS = 4096;

/**
 * Per-peer accounting, bounded: a peer ID seen for the first time gets full buckets; past `maxPeers`
 * the least recently seen peer is forgotten (so a churn of fresh peer IDs cannot grow memory, and a
 * forgotten peer only gets its burst back).
 *
 * @example
 * const book = new PeerBook({ opsPerSecond: 2 });
 * if (!book.get(peerId).ops.take()) book.get(peerId).counters.rateLimited++;
 */
export class PeerBook {
  private readonly peers = new Map<string, PeerState>();
  private readonly limits: Required<PeerLimits>;
  private readonly maxPeers: number;

  constructor(limits: PeerLimits = {}, maxPeers = MAX_TRACKED_PEERS) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.maxPeers = maxPeers;
  }

  /** The state of peer `id`, created on first sight; marks it the most recently seen. */
  get(id: string, now: number = Date.now()): PeerState {
    let p = this.peers.get(id);
    if (p) {
      this.peers.delete(id); // re-insert: the map's order is least recently seen first
    } else {
      const l = this.limits;
      p = {
        counters: { accepted: 0, rejected: 0, ignored: 0, rateLimited: 0, syncThrottled: 0, syncOpsServed: 0 },
        ops: new TokenBucket(l.opsPerSecond, l.opsBurst, now),
        syncOps: new TokenBucket(l.syncOpsPerSecond, l.syncOpsBurst, now),
        syncRequests: new TokenBucket(l.syncRequestsPerSecond, l.syncRequestsBurst, now),
      };
      if (this.peers.size >= this.maxPeers) {
        const oldest = this.peers.keys().next().value;
        if (oldest !== undefined) this.peers.delete(oldest);
      }
    }
    this.peers.set(id, p);
    return p;
  }

  /** A copy of every tracked peer's counters (peer ID → counters), least recently seen first. */
  counters(): Record<string, PeerCounters> {
    return Object.fromEntries([...this.peers].map(([id, p]) => [id, { ...p.counters }]));
  }
}
