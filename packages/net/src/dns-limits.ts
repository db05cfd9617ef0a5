// Abuse limits for a DNS server on a public address (issue 19): an authoritative server that answers
// anyone over UDP is a reflector — a spoofed source gets our answers — so answers per source are
// rate limited (RRL: a token bucket per /24 or /56, and one for the whole server), and past the limit
// every `slip`-th answer goes out empty with TC=1 (a real resolver retries over TCP, which a spoofer
// cannot complete) while the rest are dropped. Pure: the caller passes the clock.
import { isIPv6 } from 'node:net';

export interface ResponseRateLimits {
  /** Answers per second per source network (refill rate). */
  perSourcePerSecond: number;
  /** Bucket size per source network (answers a quiet source may get at once). */
  perSourceBurst: number;
  /** Answers per second for the whole server, whatever the source (0 = no global limit). */
  globalPerSecond: number;
  /**
   * Past the limit, 1 in `slip` answers goes out truncated (empty, TC=1) so a real resolver retries
   * over TCP; the others are dropped. 0 = drop all (use it when there is no TCP listener).
   */
  slip: number;
  /** IPv4 sources are grouped by this prefix (24), IPv6 by `ipv6Prefix` (56). */
  ipv4Prefix: number;
  ipv6Prefix: number;
  /** At most this many source networks are tracked; the least recently seen is forgotten first. */
  maxSources: number;
}

/** Defaults for a node's public DNS: plenty for resolvers (they cache for the TTL), little for a reflector. */
export const DEFAULT_RESPONSE_RATE_LIMITS: ResponseRateLimits = {
  perSourcePerSecond: 20,
  perSourceBurst: 40,
  globalPerSecond: 2000,
  slip: 2,
  ipv4Prefix: 24,
  ipv6Prefix: 56,
  maxSources: 65_536,
};

/** What to do with one UDP answer: send it, send it empty with TC=1, or send nothing. */
export type RateDecision = 'answer' | 'slip' | 'drop';

export interface ResponseRateLimiter {
  /** Decide for one answer to `source` at `nowMs` (counts it). */
  decide(source: string, nowMs: number): RateDecision;
  /** Source networks currently tracked. */
  tracked(): number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** Answers refused since the bucket last had a token (drives the slip). */
  refused: number;
}

/**
 * The network a source belongs to for rate limiting: `a.b.c.0/24` for IPv4 (and IPv4-mapped IPv6),
 * the first `ipv6Prefix` bits for IPv6. A spoofer picks addresses freely inside a network; grouping
 * keeps one victim network from getting a bucket per address.
 *
 * @example sourceNetwork('198.51.100.7', 24, 56) // '198.51.100.0/24'
 */
export function sourceNetwork(source: string, ipv4Prefix = 24, ipv6Prefix = 56): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(source);
  const v4 = mapped ? mapped[1] : source;
  if (!isIPv6(v4 ?? '')) {
    const octets = (v4 ?? '').split('.').map(Number);
    if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) return source;
    const n = ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
    const mask = ipv4Prefix === 0 ? 0 : (0xffffffff << (32 - ipv4Prefix)) >>> 0;
    const m = (n & mask) >>> 0;
    return `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}/${ipv4Prefix}`;
  }
  // IPv6: expand, keep the prefix bits.
  const [head, tail] = source.toLowerCase().split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const bits = groups
    .map((g) =>
      Number.parseInt(g || '0', 16)
        .toString(2)
        .padStart(16, '0'),
    )
    .join('');
  const kept = bits.slice(0, ipv6Prefix).padEnd(128, '0');
  const out: string[] = [];
  for (let i = 0; i < 128; i += 16) out.push(Number.parseInt(kept.slice(i, i + 16), 2).toString(16));
  return `${out.join(':')}/${ipv6Prefix}`;
}

/**
 * A response rate limiter: a token bucket per source network (`perSourcePerSecond`, `perSourceBurst`)
 * and one for the server (`globalPerSecond`, burst = one second's worth). Within both: `answer`.
 * Past either: `slip` for every `slip`-th refused answer of that source network, else `drop`. Pure
 * apart from its own table (bounded by `maxSources`, least recently seen forgotten first).
 *
 * @example
 * const rrl = createResponseRateLimiter({ ...DEFAULT_RESPONSE_RATE_LIMITS, perSourceBurst: 1 });
 * rrl.decide('198.51.100.7', 0); // 'answer'
 * rrl.decide('198.51.100.8', 0); // 'drop' (same /24, bucket empty: the 1st refusal; the 2nd is 'slip')
 */
export function createResponseRateLimiter(limits: ResponseRateLimits): ResponseRateLimiter {
  const table = new Map<string, Bucket>();
  const global: Bucket = { tokens: limits.globalPerSecond, at: 0, refused: 0 };
  const refill = (b: Bucket, rate: number, burst: number, now: number) => {
    if (now > b.at) b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = Math.max(b.at, now);
  };
  return {
    decide(source, now) {
      const key = sourceNetwork(source, limits.ipv4Prefix, limits.ipv6Prefix);
      let b = table.get(key);
      if (b)
        table.delete(key); // re-inserted below: Map order = least recently seen first
      else {
        b = { tokens: limits.perSourceBurst, at: now, refused: 0 };
        if (table.size >= limits.maxSources) table.delete(table.keys().next().value as string);
      }
      table.set(key, b);
      refill(b, limits.perSourcePerSecond, limits.perSourceBurst, now);
      if (limits.globalPerSecond > 0) refill(global, limits.globalPerSecond, limits.globalPerSecond, now);
      const globalOk = limits.globalPerSecond <= 0 || global.tokens >= 1;
      if (b.tokens >= 1 && globalOk) {
        b.tokens -= 1;
        if (limits.globalPerSecond > 0) global.tokens -= 1;
        b.refused = 0;
        return 'answer';
      }
      b.refused += 1;
      return limits.slip > 0 && b.refused % limits.slip === 0 ? 'slip' : 'drop';
    },
    tracked: () => table.size,
  };
}
