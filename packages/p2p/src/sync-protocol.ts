import type { Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { isOp, type Op } from './op-store.ts';

/**
 * `/formation/sync/1`: anti-entropy over one libp2p stream. Every frame is a length-prefixed JSON
 * object. The client asks, the server answers, until the client closes:
 *   client → { t: 'since', heads: string[] }       server → { t: 'ops', ops: Op[], more: boolean, heads }
 *   client → { t: 'get', hashes: string[] }        server → { t: 'ops', ops: Op[], more: false, heads }
 * The server never sends more than `maxOps` ops or about `maxFrameBytes` bytes per frame.
 */
export const SYNC_PROTOCOL = '/formation/sync/1';

export type SyncRequest = { t: 'since'; heads: string[] } | { t: 'get'; hashes: string[] };
export interface SyncResponse {
  t: 'ops';
  ops: Op[];
  more: boolean;
  heads: string[];
}

export interface FrameLimits {
  maxFrameBytes: number;
  /** Ops per answer this side serves (at most MAX_OPS_PER_FRAME). */
  maxOps: number;
  /** Largest number of hashes accepted in a request. */
  maxHashes: number;
}

/** Most ops a client accepts in one answer, whatever batch size the server uses. */
export const MAX_OPS_PER_FRAME = 4096;

export class SyncFrameError extends Error {}

export function openFrames(stream: Stream, limits: FrameLimits) {
  const lp = lpStream(stream, { maxDataLength: limits.maxFrameBytes });
  return {
    async send(value: SyncRequest | SyncResponse, signal?: AbortSignal): Promise<void> {
      const bytes = new TextEncoder().encode(JSON.stringify(value));
      if (bytes.length > limits.maxFrameBytes) throw new SyncFrameError(`frame of ${bytes.length} bytes is too large`);
      await lp.write(bytes, signal ? { signal } : {});
    },
    async read(signal?: AbortSignal): Promise<unknown> {
      const buf = await lp.read(signal ? { signal } : {});
      try {
        return JSON.parse(new TextDecoder().decode(buf.subarray()));
      } catch {
        throw new SyncFrameError('frame is not JSON');
      }
    },
  };
}

const HASH_RE = /^[0-9A-Za-z_:.-]{1,200}$/;

function hashList(v: unknown, max: number): string[] | undefined {
  if (!Array.isArray(v) || v.length > max) return undefined;
  return v.every((h) => typeof h === 'string' && HASH_RE.test(h)) ? (v as string[]) : undefined;
}

/** Parse a client frame; undefined when it is malformed or over the limits. */
export function parseRequest(v: unknown, limits: FrameLimits): SyncRequest | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.t === 'since') {
    const heads = hashList(o.heads, limits.maxHashes);
    return heads ? { t: 'since', heads } : undefined;
  }
  if (o.t === 'get') {
    const hashes = hashList(o.hashes, limits.maxHashes);
    return hashes ? { t: 'get', hashes } : undefined;
  }
  return undefined;
}

/** Parse a server frame; undefined when it is malformed or over the limits. */
export function parseResponse(v: unknown, limits: FrameLimits): SyncResponse | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (o.t !== 'ops' || !Array.isArray(o.ops) || o.ops.length > MAX_OPS_PER_FRAME) return undefined;
  if (!o.ops.every(isOp)) return undefined;
  const heads = hashList(o.heads, limits.maxHashes);
  if (!heads) return undefined;
  return { t: 'ops', ops: o.ops as Op[], more: o.more === true, heads };
}

/** Keep ops (in order) while their JSON fits in `budget` bytes; always at least one if any. */
export function fitOps(ops: Op[], budget: number): { ops: Op[]; truncated: boolean } {
  const out: Op[] = [];
  let size = 0;
  for (const op of ops) {
    const n = Buffer.byteLength(JSON.stringify(op));
    if (out.length > 0 && size + n > budget) return { ops: out, truncated: true };
    if (n > budget) return { ops: out, truncated: out.length < ops.length };
    out.push(op);
    size += n + 1;
  }
  return { ops: out, truncated: false };
}
