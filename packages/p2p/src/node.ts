import type { Logger } from '@formation/service';
import type { GossipSub } from '@libp2p/gossipsub';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import type { Libp2p } from 'libp2p';
import { createBootstrap } from './bootstrap.ts';
import { type GossipChannel, startChannels } from './channels.ts';
import { createHost } from './host.ts';
import type { PeerCounters, PeerLimits } from './limits.ts';
import { type Op, type OpStore, refHash } from './op-store.ts';
import { startOpsGossip } from './ops-gossip.ts';
import { PeerBook } from './peer-book.ts';
import { RecentHashes } from './recent-hashes.ts';
import { emptyStats, type P2PStats } from './stats.ts';
import {
  type FrameLimits,
  fitOps,
  MAX_OPS_PER_FRAME,
  openFrames,
  parseRequest,
  parseResponse,
  SYNC_PROTOCOL,
  type SyncResponse,
} from './sync-protocol.ts';

// The node is assembled from one module per concern; these are part of its public API.
export type { GossipChannel } from './channels.ts';
export { DEFAULT_P2P_PORT } from './host.ts';
export type { P2PStats } from './stats.ts';

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
  /** Largest sync frame, bytes; default 4 MiB. */
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

export interface SyncResult {
  peer: string;
  rounds: number;
  received: number;
  accepted: number;
  rejected: number;
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

const MAX_SYNC_ROUNDS = 10_000;
const MAX_HASHES = 1024;

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
  const maxOpBytes = opts.maxOpBytes ?? 256 * 1024;
  const limits: FrameLimits = {
    maxFrameBytes: opts.maxFrameBytes ?? 4 * 1024 * 1024,
    maxOps: Math.min(opts.syncBatch ?? 256, MAX_OPS_PER_FRAME),
    maxHashes: MAX_HASHES,
  };
  const stats = emptyStats();
  const peers = new PeerBook(opts.limits);
  const fromNetwork = new RecentHashes();

  const libp2p = await createHost({
    key: opts.key,
    listen: opts.listen,
    maxOpBytes,
    topics: [topic, ...(opts.channels ?? []).map((c) => c.topic)],
  });
  const pubsub = libp2p.services.pubsub;

  const gossip = startOpsGossip({
    pubsub,
    topic,
    store,
    peers,
    fromNetwork,
    stats,
    maxOpBytes,
    log,
    onMissingParents: (peer) => scheduleSync(peer, 0),
  });
  const { broadcast } = startChannels({ pubsub, channels: opts.channels ?? [], peers, log });

  // ---- anti-entropy server ----
  await libp2p.handle(
    SYNC_PROTOCOL,
    async (stream: Stream, connection: Connection) => {
      const frames = openFrames(stream, limits);
      const signal = AbortSignal.timeout(120_000);
      try {
        for (let i = 0; i < MAX_SYNC_ROUNDS; i++) {
          let raw: unknown;
          try {
            raw = await frames.read(signal);
          } catch {
            break; // client closed
          }
          const req = parseRequest(raw, limits);
          if (!req) {
            log.warn({ peer: connection.remotePeer.toString() }, 'malformed sync request; closing stream');
            stream.abort(new Error('malformed sync request'));
            return;
          }
          // Each request walks the log and each op served costs bytes: both are budgeted per peer.
          // Over budget, the peer gets an empty answer (`more: true`) and comes back later.
          const peer = peers.get(connection.remotePeer.toString());
          const budget = Math.floor(peer.syncOps.left());
          if (budget < 1 || !peer.syncRequests.take()) {
            peer.counters.syncThrottled++;
            if (peer.counters.syncThrottled === 1 || peer.counters.syncThrottled % 100 === 0) {
              log.warn(
                { peer: connection.remotePeer.toString(), throttled: peer.counters.syncThrottled },
                'anti-entropy over this peer’s budget; answering empty',
              );
            }
            await frames.send({ t: 'ops', ops: [], more: true, heads: [] }, signal);
            continue;
          }
          const maxOps = Math.min(limits.maxOps, budget);
          let ops: Op[];
          let more = false;
          if (req.t === 'since') {
            const found = await store.opsSince(req.heads, maxOps + 1);
            more = found.length > maxOps;
            ops = found.slice(0, maxOps);
          } else {
            ops = (await store.getOps(req.hashes)).slice(0, maxOps);
          }
          const fit = fitOps(ops, limits.maxFrameBytes - 64 * MAX_HASHES - 1024);
          peer.syncOps.take(fit.ops.length);
          peer.counters.syncOpsServed += fit.ops.length;
          const resp: SyncResponse = {
            t: 'ops',
            ops: fit.ops,
            more: more || fit.truncated,
            heads: (await store.heads()).slice(0, MAX_HASHES),
          };
          await frames.send(resp, signal);
        }
        await stream.close({ signal }).catch(() => undefined);
      } catch (err) {
        log.debug({ err, peer: connection.remotePeer.toString() }, 'sync stream ended with an error');
        stream.abort(err as Error);
      }
    },
    { maxInboundStreams: 2, runOnLimitedConnection: false },
  );

  // ---- anti-entropy client ----
  const inflight = new Map<string, Promise<SyncResult>>();

  function syncWith(peer: PeerId | string): Promise<SyncResult> {
    const id = peer.toString();
    const running = inflight.get(id);
    if (running) return running;
    const p = runSync(id).finally(() => inflight.delete(id));
    inflight.set(id, p);
    return p;
  }

  async function runSync(id: string): Promise<SyncResult> {
    const conn = libp2p.getConnections().find((c) => c.remotePeer.toString() === id);
    if (!conn) throw new Error(`Cannot sync with ${id}: not connected`);
    const signal = AbortSignal.timeout(120_000);
    const stream = await conn.newStream(SYNC_PROTOCOL, { signal });
    const frames = openFrames(stream, limits);
    const result: SyncResult = { peer: id, rounds: 0, received: 0, accepted: 0, rejected: 0 };
    // Hashes from the previous answer that we now hold: telling the server lets it skip their
    // ancestors even when it does not know our heads (we are on a branch it has not seen).
    let alsoKnown: string[] = [];
    try {
      while (result.rounds < MAX_SYNC_ROUNDS) {
        result.rounds++;
        const before = await store.heads();
        const known = [...new Set([...before, ...alsoKnown])].slice(0, MAX_HASHES);
        await frames.send({ t: 'since', heads: known }, signal);
        const resp = parseResponse(await frames.read(signal), limits);
        if (!resp) throw new Error('malformed sync response');
        if (resp.ops.length === 0) break;
        const ops = resp.ops.filter((op) => Buffer.byteLength(JSON.stringify(op)) <= maxOpBytes);
        for (const op of ops) fromNetwork.add(op.hash);
        const r = await store.applyBatch(ops);
        result.received += resp.ops.length;
        result.accepted += r.accepted.length;
        result.rejected += r.rejected.length + (resp.ops.length - ops.length);
        const bad = new Set([...r.rejected, ...r.pending].map(refHash));
        alsoKnown = ops.map((o) => o.hash).filter((h) => !bad.has(h));
        if (alsoKnown.length === 0) break; // nothing usable: a broken or hostile peer
        const after = await store.heads();
        const changed = after.length !== before.length || after.some((h, i) => h !== before[i]);
        if (!resp.more && !changed) break;
      }
      await stream.close({ signal }).catch(() => undefined);
    } catch (err) {
      stream.abort(err as Error);
      throw err;
    }
    stats.syncs++;
    stats.syncAccepted += result.accepted;
    if (result.accepted > 0) log.info(result, 'anti-entropy caught up');
    return result;
  }

  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;
  function scheduleSync(peer: PeerId | string, delayMs: number): void {
    if (stopped) return;
    const t = setTimeout(() => {
      timers.delete(t);
      if (stopped) return;
      syncWith(peer).catch((err: unknown) => log.debug({ err, peer: peer.toString() }, 'sync failed'));
    }, delayMs);
    timers.add(t);
  }

  if (opts.syncOnConnect !== false) libp2p.addEventListener('peer:connect', (evt) => scheduleSync(evt.detail, 50));

  async function syncAll(): Promise<SyncResult[]> {
    const ids = [...new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()))];
    const results = await Promise.allSettled(ids.map((id) => syncWith(id)));
    return results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  }

  const bootstrap = createBootstrap({ libp2p, addrs: opts.bootstrap ?? [], log });
  await bootstrap.redial();

  const syncTimer =
    (opts.syncIntervalMs ?? 10_000) > 0 ? setInterval(() => void syncAll(), opts.syncIntervalMs ?? 10_000) : undefined;
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
    syncWith,
    syncAll,
    peerStats: () => peers.counters(),
    // getScore is on the implementation, not on the GossipSub interface type
    score: (peer) => (pubsub as unknown as { getScore(id: string): number }).getScore(peer),
    async stop() {
      stopped = true;
      if (syncTimer) clearInterval(syncTimer);
      if (redialTimer) clearInterval(redialTimer);
      for (const t of timers) clearTimeout(t);
      gossip.stop();
      await Promise.allSettled([...inflight.values()]);
      await libp2p.stop();
      log.info('p2p stopped');
    },
  };
}
