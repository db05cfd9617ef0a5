import type { Logger } from '@formation/service';
import type { GossipSub } from '@libp2p/gossipsub';
import type { PeerId } from '@libp2p/interface';
import type { Libp2p } from 'libp2p';
import { createBootstrap } from './bootstrap.ts';
import { type GossipChannel, startChannels } from './channels.ts';
import { createHost } from './host.ts';
import type { PeerCounters, PeerLimits } from './limits.ts';
import type { Op, OpStore } from './op-store.ts';
import { startOpsGossip } from './ops-gossip.ts';
import { PeerBook } from './peer-book.ts';
import { RecentHashes } from './recent-hashes.ts';
import { emptyStats, type P2PStats } from './stats.ts';
import { createSyncClient, type SyncResult } from './sync-client.ts';
import { checkFrameRoom, frameLimits } from './sync-rules.ts';
import { serveSync } from './sync-server.ts';

// The node is assembled from one module per concern; these are part of its public API.
export type { GossipChannel } from './channels.ts';
export { DEFAULT_P2P_PORT } from './host.ts';
export type { P2PStats } from './stats.ts';
export type { SyncResult } from './sync-client.ts';

/** The gossip topic that carries new state ops (one op per message, JSON). */
export const OPS_TOPIC = 'formation/ops/1';

export interface P2PNodeOptions {
  /** The node's secp256k1 key (from `@formation/identity`); the libp2p peer ID is derived from it. */
  key: { privateKey: Uint8Array };
  /** Listen multiaddrs; default `/ip4/127.0.0.1/tcp/3005`. */
  listen?: string[];
  /** Peers to dial at start and to keep re-dialling while disconnected. */
  bootstrap?: string[];
  store: OpStore;
  logger: Logger;
  topic?: string;
  /** Anti-entropy with every connected peer this often (ms); default 10 s. 0 disables the timer. */
  syncIntervalMs?: number;
  /** Run anti-entropy with every newly connected peer; default true. */
  syncOnConnect?: boolean;
  /** Re-dial disconnected bootstrap peers this often (ms); default 5 s. */
  redialIntervalMs?: number;
  /** Largest op accepted from gossip or sync, bytes; default 256 KiB. */
  maxOpBytes?: number;
  /** Largest sync frame, bytes; default 4 MiB. At least `maxOpBytes` + 66 560 (room for an answer's heads), else `CONFIG_INVALID`. */
  maxFrameBytes?: number;
  /** Ops per sync response; default 256. */
  syncBatch?: number;
  /**
   * Other gossip topics (e.g. node presence): each message is passed to `validate`; `accept` forwards
   * it to the mesh, `reject` drops it and scores the sender down, `ignore` drops it quietly.
   * Publish on them with `broadcast`.
   */
  channels?: GossipChannel[];
  /** Per-peer bounds on gossip validation and anti-entropy serving (defaults: `DEFAULT_LIMITS`). */
  limits?: PeerLimits;
}

export interface P2PNode {
  /** This node's peer ID (base58). */
  readonly peerId: string;
  readonly libp2p: Libp2p<{ pubsub: GossipSub }>;
  readonly stats: P2PStats;
  /** The addresses peers can dial, each ending in `/p2p/<peerId>`. */
  multiaddrs(): string[];
  /** Peer IDs with an open connection. */
  peers(): string[];
  /** Peers in the gossip topic's mesh or subscribed to it. */
  topicPeers(): string[];
  dial(addr: string): Promise<string>;
  /** Publish an op the local store already holds (normally automatic through `onAccepted`). */
  publish(op: Op): Promise<void>;
  /** Publish a message on one of `channels` (best effort: dropped when no peer listens yet). */
  broadcast(topic: string, data: Uint8Array): Promise<void>;
  /** Anti-entropy with one peer: pull what it has and we lack, until caught up. */
  syncWith(peer: PeerId | string): Promise<SyncResult>;
  /** Anti-entropy with every connected peer. */
  syncAll(): Promise<SyncResult[]>;
  /** What this node counted per peer (peer ID -> counters): accepted, rejected, rate-limited, sync served. */
  peerStats(): Record<string, PeerCounters>;
  /** A peer's gossipsub score (below `GRAYLIST_THRESHOLD` its messages are dropped unread). */
  score(peer: string): number;
  stop(): Promise<void>;
}

/**
 * Start a libp2p host (TCP + Noise + Yamux + identify + ping + gossipsub) that replicates the ops of
 * `store`: every op the store accepts locally is gossiped; every gossiped op is applied and forwarded
 * only if the store accepts it (rejected ops are reported to gossipsub as invalid, which also scores
 * the sender down); a peer that sends an op with missing parents triggers anti-entropy with it.
 * Anti-entropy (`/formation/sync/1`) runs on every new connection and every `syncIntervalMs`.
 *
 * @example
 * const p2p = await createP2PNode({ key, store, logger, bootstrap: ['/ip4/10.0.0.2/tcp/3005/p2p/16U…'] });
 */
export async function createP2PNode(opts: P2PNodeOptions): Promise<P2PNode> {
  const log = opts.logger.child({ component: 'p2p' });
  const store = opts.store;
  const topic = opts.topic ?? OPS_TOPIC;
  const channels = opts.channels ?? [];
  const maxOpBytes = opts.maxOpBytes ?? 256 * 1024;
  const limits = frameLimits(opts);
  checkFrameRoom(maxOpBytes, limits.maxFrameBytes); // before anything listens
  const stats = emptyStats();
  const peers = new PeerBook(opts.limits);
  const fromNetwork = new RecentHashes();

  const libp2p = await createHost({
    key: opts.key,
    listen: opts.listen,
    maxOpBytes,
    topics: [topic, ...channels.map((c) => c.topic)],
  });
  const pubsub = libp2p.services.pubsub;

  const sync = createSyncClient({ libp2p, store, limits, maxOpBytes, fromNetwork, stats, log });
  const gossip = startOpsGossip({
    pubsub,
    topic,
    store,
    peers,
    fromNetwork,
    stats,
    maxOpBytes,
    log,
    onMissingParents: (peer) => sync.schedule(peer, 0),
  });
  const { broadcast } = startChannels({ pubsub, channels, peers, log });
  await serveSync({ libp2p, store, peers, limits, log });
  if (opts.syncOnConnect !== false) libp2p.addEventListener('peer:connect', (evt) => sync.schedule(evt.detail, 50));

  const bootstrap = createBootstrap({ libp2p, addrs: opts.bootstrap ?? [], log });
  await bootstrap.redial();

  const syncIntervalMs = opts.syncIntervalMs ?? 10_000;
  const syncTimer = syncIntervalMs > 0 ? setInterval(() => void sync.syncAll(), syncIntervalMs) : undefined;
  const redialTimer = opts.bootstrap?.length
    ? setInterval(() => void bootstrap.redial(), opts.redialIntervalMs ?? 5_000)
    : undefined;
  syncTimer?.unref();
  redialTimer?.unref();

  log.info({ peerId: libp2p.peerId.toString(), addrs: libp2p.getMultiaddrs().map(String) }, 'p2p started');

  return {
    peerId: libp2p.peerId.toString(),
    libp2p,
    stats,
    multiaddrs: () => libp2p.getMultiaddrs().map(String),
    peers: () => [...new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()))],
    topicPeers: () => pubsub.getSubscribers(topic).map(String),
    dial: bootstrap.dial,
    publish: gossip.publish,
    broadcast,
    syncWith: sync.syncWith,
    syncAll: sync.syncAll,
    peerStats: () => peers.counters(),
    // getScore is on the implementation, not on the GossipSub interface type
    score: (peer) => (pubsub as unknown as { getScore(id: string): number }).getScore(peer),
    async stop() {
      if (syncTimer) clearInterval(syncTimer);
      if (redialTimer) clearInterval(redialTimer);
      gossip.stop();
      await sync.stop();
      await libp2p.stop();
      log.info('p2p stopped');
    },
  };
}
