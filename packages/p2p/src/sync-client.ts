import type { Logger } from '@formation/service';
import type { PeerId } from '@libp2p/interface';
import type { P2PHost } from './host.ts';
import type { OpStore } from './op-store.ts';
import type { RecentHashes } from './recent-hashes.ts';
import type { P2PStats } from './stats.ts';
import { type FrameLimits, openFrames, parseResponse, SYNC_PROTOCOL } from './sync-protocol.ts';
import {
  acceptableOps,
  knownHeads,
  MAX_SYNC_ROUNDS,
  SYNC_STREAM_TIMEOUT_MS,
  usableHashes,
  wantsAnotherRound,
} from './sync-rules.ts';

export interface SyncResult {
  peer: string;
  rounds: number;
  received: number;
  accepted: number;
  rejected: number;
}

export interface SyncClientDeps {
  libp2p: P2PHost;
  store: OpStore;
  limits: FrameLimits;
  maxOpBytes: number;
  /** Ops received by anti-entropy are marked here so `onAccepted` does not gossip them. */
  fromNetwork: RecentHashes;
  stats: P2PStats;
  log: Logger;
}

export interface SyncClient {
  /** Anti-entropy with one connected peer until caught up; one run per peer at a time (callers share it). */
  syncWith(peer: PeerId | string): Promise<SyncResult>;
  /** Anti-entropy with every connected peer; failures are left out of the results. */
  syncAll(): Promise<SyncResult[]>;
  /** `syncWith(peer)` after `delayMs`, errors logged; nothing once stopped. */
  schedule(peer: PeerId | string, delayMs: number): void;
  /** Cancel scheduled syncs and wait for running ones. */
  stop(): Promise<void>;
}

/** The anti-entropy client: pulls from a peer what it has and we lack, round after round. */
export function createSyncClient(deps: SyncClientDeps): SyncClient {
  const { libp2p, store, limits, maxOpBytes, fromNetwork, stats, log } = deps;
  const inflight = new Map<string, Promise<SyncResult>>();
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

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
    const signal = AbortSignal.timeout(SYNC_STREAM_TIMEOUT_MS);
    const stream = await conn.newStream(SYNC_PROTOCOL, { signal });
    const frames = openFrames(stream, limits);
    const result: SyncResult = { peer: id, rounds: 0, received: 0, accepted: 0, rejected: 0 };
    let alsoKnown: string[] = [];
    try {
      while (result.rounds < MAX_SYNC_ROUNDS) {
        result.rounds++;
        const before = await store.heads();
        await frames.send({ t: 'since', heads: knownHeads(before, alsoKnown) }, signal);
        const resp = parseResponse(await frames.read(signal), limits);
        if (!resp) throw new Error('malformed sync response');
        if (resp.ops.length === 0) break;
        const ops = acceptableOps(resp.ops, maxOpBytes);
        for (const op of ops) fromNetwork.add(op.hash);
        const r = await store.applyBatch(ops);
        result.received += resp.ops.length;
        result.accepted += r.accepted.length;
        result.rejected += r.rejected.length + (resp.ops.length - ops.length);
        alsoKnown = usableHashes(ops, r);
        if (alsoKnown.length === 0) break; // nothing usable: a broken or hostile peer
        if (!wantsAnotherRound(resp.more, before, await store.heads())) break;
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

  return {
    syncWith,
    async syncAll() {
      const ids = [...new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()))];
      const results = await Promise.allSettled(ids.map((id) => syncWith(id)));
      return results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    },
    schedule(peer, delayMs) {
      if (stopped) return;
      const t = setTimeout(() => {
        timers.delete(t);
        if (stopped) return;
        syncWith(peer).catch((err: unknown) => log.debug({ err, peer: peer.toString() }, 'sync failed'));
      }, delayMs);
      timers.add(t);
    },
    async stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      await Promise.allSettled([...inflight.values()]);
    },
  };
}
