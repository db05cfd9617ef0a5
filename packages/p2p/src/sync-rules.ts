import { FormError } from '@formation/interface';
import { type ApplyResult, type Op, refHash } from './op-store.ts';
import type { PeerState } from './peer-book.ts';
import { type FrameLimits, fitOps, MAX_OPS_PER_FRAME, type SyncRequest, type SyncResponse } from './sync-protocol.ts';

/**
 * The pure half of anti-entropy (`/formation/sync/1`): how much a server serves a peer, what its
 * answer holds, and when a client stops. The stream handling is in `sync-server.ts` / `sync-client.ts`.
 */

/** Most request/answer rounds on one sync stream (either side stops there). */
export const MAX_SYNC_ROUNDS = 10_000;
/** Most hashes in a request, and most heads in an answer. */
export const MAX_HASHES = 1024;
/** One sync stream's whole lifetime, either side. */
export const SYNC_STREAM_TIMEOUT_MS = 120_000;
/** Room left in a frame for the answer's heads and envelope, so the ops get the rest. */
export const FRAME_OVERHEAD_BYTES = 64 * MAX_HASHES + 1024;

/**
 * The frame limits of a node: `syncBatch` ops per answer (default 256, at most `MAX_OPS_PER_FRAME`),
 * frames of at most `maxFrameBytes` (default 4 MiB).
 *
 * @example frameLimits({}) // { maxFrameBytes: 4194304, maxOps: 256, maxHashes: 1024 }
 */
export function frameLimits(opts: { maxFrameBytes?: number; syncBatch?: number }): FrameLimits {
  return {
    maxFrameBytes: opts.maxFrameBytes ?? 4 * 1024 * 1024,
    maxOps: Math.min(opts.syncBatch ?? 256, MAX_OPS_PER_FRAME),
    maxHashes: MAX_HASHES,
  };
}

/**
 * Refuse, at start, a frame too small for the largest op: `answerOps` leaves out a first op that does
 * not fit beside the heads, so the server would answer that op's requester with no ops and `more`
 * for ever, and the client, getting nothing, stops: the op would never sync. `CONFIG_INVALID` unless
 * `maxFrameBytes` ≥ `maxOpBytes` + `FRAME_OVERHEAD_BYTES`.
 *
 * @example checkFrameRoom(256 * 1024, 4 * 1024 * 1024) // the defaults: fine
 */
export function checkFrameRoom(maxOpBytes: number, maxFrameBytes: number): void {
  const needed = maxOpBytes + FRAME_OVERHEAD_BYTES;
  if (maxFrameBytes >= needed) return;
  throw new FormError(
    'CONFIG_INVALID',
    `Cannot start p2p: maxFrameBytes (${maxFrameBytes}) leaves no room for an op of maxOpBytes (${maxOpBytes}) ` +
      `beside the ${FRAME_OVERHEAD_BYTES} bytes a sync answer keeps for its heads; such an op could never be synced`,
    {
      hint: `Raise maxFrameBytes to at least ${needed}, or lower maxOpBytes to at most ${maxFrameBytes - FRAME_OVERHEAD_BYTES}.`,
      details: { maxFrameBytes, maxOpBytes, frameOverheadBytes: FRAME_OVERHEAD_BYTES },
    },
  );
}

/**
 * How many ops the server may put in its answer to one request from `peer`: each request walks the
 * log and each op served costs bytes, both budgeted per peer. 0 means throttled (counted): the peer
 * gets an empty answer with `more: true` and comes back later. Takes a request token only when the
 * op budget is not already spent.
 */
export function serveAllowance(peer: PeerState, maxOps: number, now: number = Date.now()): number {
  const budget = Math.floor(peer.syncOps.left(now));
  if (budget < 1 || !peer.syncRequests.take(1, now)) {
    peer.counters.syncThrottled++;
    return 0;
  }
  return Math.min(maxOps, budget);
}

/** Log a peer's throttling on the first time and every hundredth, not on every empty answer. */
export function shouldLogThrottle(throttled: number): boolean {
  return throttled === 1 || throttled % 100 === 0;
}

/** The answer to a throttled request: nothing now, come back. */
export const THROTTLED_ANSWER: SyncResponse = { t: 'ops', ops: [], more: true, heads: [] };

/**
 * The ops of an answer. `found` is what the store returned: for `since`, up to `maxOps + 1` (one
 * extra tells whether there is more); for `get`, the requested ops it holds. The ops are then cut to
 * fit the frame, leaving room for the heads.
 */
export function answerOps(
  req: SyncRequest,
  found: Op[],
  maxOps: number,
  maxFrameBytes: number,
): { ops: Op[]; more: boolean } {
  const more = req.t === 'since' && found.length > maxOps;
  const fit = fitOps(found.slice(0, maxOps), maxFrameBytes - FRAME_OVERHEAD_BYTES);
  return { ops: fit.ops, more: more || fit.truncated };
}

/**
 * The heads a client sends: its own, plus the hashes from the previous answer that it now holds
 * (they let the server skip their ancestors even when it does not know our heads, because we are on
 * a branch it has not seen). Deduplicated, at most `MAX_HASHES`.
 */
export function knownHeads(heads: string[], alsoKnown: string[]): string[] {
  return [...new Set([...heads, ...alsoKnown])].slice(0, MAX_HASHES);
}

/** The ops of an answer small enough to accept (larger ones count as rejected). */
export function acceptableOps(ops: Op[], maxOpBytes: number): Op[] {
  return ops.filter((op) => Buffer.byteLength(JSON.stringify(op)) <= maxOpBytes);
}

/**
 * The hashes of `applied` that the store now holds (neither rejected nor pending): the client's next
 * `alsoKnown`. None at all means the peer sent nothing usable (broken or hostile): the client stops.
 */
export function usableHashes(applied: Op[], r: ApplyResult): string[] {
  const bad = new Set([...r.rejected, ...r.pending].map(refHash));
  return applied.map((o) => o.hash).filter((h) => !bad.has(h));
}

/** Whether the client asks again: the server said there is more, or the round moved our heads. */
export function wantsAnotherRound(more: boolean, before: string[], after: string[]): boolean {
  const changed = after.length !== before.length || after.some((h, i) => h !== before[i]);
  return more || changed;
}
