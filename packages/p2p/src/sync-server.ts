import type { Logger } from '@formation/service';
import type { Connection, Stream } from '@libp2p/interface';
import type { P2PHost } from './host.ts';
import type { Op, OpStore } from './op-store.ts';
import type { PeerBook } from './peer-book.ts';
import { type FrameLimits, openFrames, parseRequest, SYNC_PROTOCOL } from './sync-protocol.ts';
import {
  answerOps,
  MAX_HASHES,
  MAX_SYNC_ROUNDS,
  SYNC_STREAM_TIMEOUT_MS,
  serveAllowance,
  shouldLogThrottle,
  THROTTLED_ANSWER,
} from './sync-rules.ts';

export interface SyncServerDeps {
  libp2p: P2PHost;
  store: OpStore;
  peers: PeerBook;
  limits: FrameLimits;
  log: Logger;
}

/**
 * Serve `/formation/sync/1`: answer each request of a stream with the ops the peer lacks, within the
 * peer's budget (see `serveAllowance`), until the client closes. A malformed request aborts the stream.
 * At most 2 sync streams per connection, none on limited (relayed) connections.
 */
export async function serveSync(deps: SyncServerDeps): Promise<void> {
  const { libp2p, store, peers, limits, log } = deps;
  await libp2p.handle(
    SYNC_PROTOCOL,
    async (stream: Stream, connection: Connection) => {
      const peerId = connection.remotePeer.toString();
      const frames = openFrames(stream, limits);
      const signal = AbortSignal.timeout(SYNC_STREAM_TIMEOUT_MS);
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
            log.warn({ peer: peerId }, 'malformed sync request; closing stream');
            stream.abort(new Error('malformed sync request'));
            return;
          }
          const peer = peers.get(peerId);
          const maxOps = serveAllowance(peer, limits.maxOps);
          if (maxOps === 0) {
            if (shouldLogThrottle(peer.counters.syncThrottled)) {
              log.warn(
                { peer: peerId, throttled: peer.counters.syncThrottled },
                'anti-entropy over this peer’s budget; answering empty',
              );
            }
            await frames.send(THROTTLED_ANSWER, signal);
            continue;
          }
          const found: Op[] =
            req.t === 'since' ? await store.opsSince(req.heads, maxOps + 1) : await store.getOps(req.hashes);
          const { ops, more } = answerOps(req, found, maxOps, limits.maxFrameBytes);
          peer.syncOps.take(ops.length);
          peer.counters.syncOpsServed += ops.length;
          await frames.send({ t: 'ops', ops, more, heads: (await store.heads()).slice(0, MAX_HASHES) }, signal);
        }
        await stream.close({ signal }).catch(() => undefined);
      } catch (err) {
        log.debug({ err, peer: peerId }, 'sync stream ended with an error');
        stream.abort(err as Error);
      }
    },
    { maxInboundStreams: 2, runOnLimitedConnection: false },
  );
}
