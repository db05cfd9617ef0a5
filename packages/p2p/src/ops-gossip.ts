import type { Logger } from '@formation/service';
import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { PeerId } from '@libp2p/interface';
import { countOpVerdict, decodeGossipOp, type GossipVerdict, verdictOfApply } from './gossip-rules.ts';
import type { P2PHost } from './host.ts';
import type { Op, OpStore } from './op-store.ts';
import type { PeerBook } from './peer-book.ts';
import type { RecentHashes } from './recent-hashes.ts';
import type { P2PStats } from './stats.ts';

/** gossipsub's name for each verdict. */
export const VALIDATOR_RESULT: Record<GossipVerdict, TopicValidatorResult> = {
  accept: TopicValidatorResult.Accept,
  reject: TopicValidatorResult.Reject,
  ignore: TopicValidatorResult.Ignore,
};

export interface OpsGossipDeps {
  pubsub: P2PHost['services']['pubsub'];
  topic: string;
  store: OpStore;
  peers: PeerBook;
  /** Ops received from the network: applied here, never re-published by `onAccepted`. */
  fromNetwork: RecentHashes;
  stats: P2PStats;
  maxOpBytes: number;
  log: Logger;
  /** Called when a peer gossiped an op whose parents this node lacks. */
  onMissingParents(peer: PeerId): void;
}

export interface OpsGossip {
  /** Publish an op the local store holds (best effort: anti-entropy covers what gossip misses). */
  publish(op: Op): Promise<void>;
  /** Stop publishing the store's newly accepted ops. */
  stop(): void;
}

/**
 * The ops topic: every received op goes through the store before gossipsub forwards it (accepted →
 * forwarded, rejected → sender scored down), and every op the store accepts locally is published.
 */
export function startOpsGossip(deps: OpsGossipDeps): OpsGossip {
  const { pubsub, topic, store, peers, fromNetwork, stats, maxOpBytes, log } = deps;

  pubsub.topicValidators.set(topic, async (peer, msg) => {
    stats.gossipReceived++;
    const p = peers.get(peer.toString());
    // Over its op rate: dropped before parsing or any signature check (not penalised: the ops may be
    // valid, and anti-entropy brings them later).
    if (!p.ops.take()) {
      p.counters.rateLimited++;
      stats.gossipIgnored++;
      return TopicValidatorResult.Ignore;
    }
    const verdict = await validate(peer, msg.data);
    countOpVerdict(stats, p.counters, verdict);
    return VALIDATOR_RESULT[verdict];
  });

  async function validate(peer: PeerId, data: Uint8Array): Promise<GossipVerdict> {
    const op = decodeGossipOp(data, maxOpBytes);
    if (!op) return 'reject';
    try {
      if ((await store.getOps([op.hash])).length > 0) return 'ignore';
      fromNetwork.add(op.hash);
      const { verdict, syncSender } = verdictOfApply(await store.applyBatch([op]), op.hash);
      if (verdict === 'reject') log.warn({ peer: peer.toString(), hash: op.hash }, 'rejected gossiped op');
      if (syncSender) deps.onMissingParents(peer);
      return verdict;
    } catch (err) {
      log.error({ err, hash: op.hash }, 'store failed on a gossiped op');
      return 'ignore';
    }
  }

  pubsub.subscribe(topic);

  async function publish(op: Op): Promise<void> {
    const data = new TextEncoder().encode(JSON.stringify(op));
    if (data.length > maxOpBytes) {
      log.warn({ hash: op.hash, bytes: data.length }, 'op too large to gossip; peers get it by anti-entropy');
      return;
    }
    try {
      await pubsub.publish(topic, data);
      stats.published++;
    } catch (err) {
      // Duplicate (already gossiped) or no peers yet: anti-entropy covers both.
      log.debug({ err, hash: op.hash }, 'publish skipped');
    }
  }

  const unsubscribe = store.onAccepted((op) => {
    if (fromNetwork.has(op.hash)) return;
    void publish(op);
  });

  return {
    publish,
    stop() {
      if (typeof unsubscribe === 'function') (unsubscribe as () => void)();
    },
  };
}
