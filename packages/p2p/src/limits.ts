import { createPeerScoreParams, createTopicScoreParams, type PeerScoreParams } from '@libp2p/gossipsub/score';

/** A token bucket: `burst` tokens, refilled at `perSecond`; `take(n)` is false when too few are left. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perSecond: number;
  private readonly burst: number;
  constructor(perSecond: number, burst: number, now: number = Date.now()) {
    this.perSecond = perSecond;
    this.burst = burst;
    this.tokens = burst;
    this.last = now;
  }
  take(n = 1, now: number = Date.now()): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
  /** Tokens left (after refilling to `now`). */
  left(now: number = Date.now()): number {
    return Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
  }
}

/** Per-peer bounds; every field has a default (see README). */
export interface PeerLimits {
  /** Gossiped ops one peer may have validated per second (token bucket); past it they are dropped unverified. */
  opsPerSecond?: number;
  opsBurst?: number;
  /** Ops this node serves one peer by anti-entropy per second (token bucket); past it the peer gets empty answers. */
  syncOpsPerSecond?: number;
  syncOpsBurst?: number;
  /** Anti-entropy requests one peer may make per second (each costs a walk of the log). */
  syncRequestsPerSecond?: number;
  syncRequestsBurst?: number;
}

export const DEFAULT_LIMITS: Required<PeerLimits> = {
  opsPerSecond: 200,
  opsBurst: 2_000,
  syncOpsPerSecond: 5_000,
  syncOpsBurst: 50_000,
  syncRequestsPerSecond: 20,
  syncRequestsBurst: 400,
};

/** What a node counted about one peer (gossip validation and anti-entropy it served). */
export interface PeerCounters {
  accepted: number;
  rejected: number;
  ignored: number;
  /** Gossiped ops dropped unverified: over the peer's op rate. */
  rateLimited: number;
  /** Anti-entropy answers cut short: over the peer's sync budget. */
  syncThrottled: number;
  syncOpsServed: number;
}

/**
 * Gossipsub peer scoring. Only P4 (invalid messages) and a little P2 (first deliveries) count: a
 * rejected message costs `INVALID_WEIGHT × count²` (count decaying ×0.99 per second), so three invalid
 * ops take a peer from 0 to −90, under the graylist threshold (−80): from then on gossipsub drops its
 * messages before validation, until the count decays (≈ 30 s per further invalid op at most).
 * Mesh-delivery penalties (P3/P3b) are off: ops are sparse, and honest quiet peers must not be punished.
 */
export const INVALID_WEIGHT = -10;
export const GOSSIP_THRESHOLD = -10;
export const PUBLISH_THRESHOLD = -40;
export const GRAYLIST_THRESHOLD = -80;

export function scoreParams(topics: string[]): Partial<PeerScoreParams> {
  const topic = createTopicScoreParams({
    topicWeight: 1,
    timeInMeshWeight: 0,
    timeInMeshQuantum: 1000,
    timeInMeshCap: 1,
    firstMessageDeliveriesWeight: 0.1,
    firstMessageDeliveriesDecay: 0.9,
    firstMessageDeliveriesCap: 50,
    meshMessageDeliveriesWeight: 0,
    meshMessageDeliveriesDecay: 0.5,
    meshMessageDeliveriesCap: 1,
    meshMessageDeliveriesThreshold: 1,
    meshMessageDeliveriesWindow: 10,
    meshMessageDeliveriesActivation: 5000,
    meshFailurePenaltyWeight: 0,
    meshFailurePenaltyDecay: 0.5,
    invalidMessageDeliveriesWeight: INVALID_WEIGHT,
    invalidMessageDeliveriesDecay: 0.99,
  });
  return createPeerScoreParams({
    topics: Object.fromEntries(topics.map((t) => [t, topic])),
    topicScoreCap: 5,
    decayInterval: 1000,
    decayToZero: 0.1,
  });
}

export const SCORE_THRESHOLDS = {
  gossipThreshold: GOSSIP_THRESHOLD,
  publishThreshold: PUBLISH_THRESHOLD,
  graylistThreshold: GRAYLIST_THRESHOLD,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 1,
};
