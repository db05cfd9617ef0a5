import { createHash } from 'node:crypto';
import { FormError } from '@formation/interface';

/**
 * Formnet addressing, as pure functions of what is already allocated (the state store's view).
 *
 *   10.128.0.0/9   the whole formnet (the leak guard's `unreachable` route)
 *   10.128.0.0/16  member addresses: one /32 per node and per developer peer (its WireGuard address)
 *   10.129.0.0 …   instance slices: one /24 per node (`.1` is the node's bridge, `.2`–`.254` instances)
 *
 * Allocation is deterministic: the same taken set gives the same answer on every node. Two nodes
 * allocating concurrently can still pick the same address; `resolveClaims` decides, identically
 * everywhere, which claim wins (the state store records claims as ops and builds the view with it).
 */
export const FORMNET_CIDR = '10.128.0.0/9';
export const MEMBER_POOL = '10.128.0.0/16';
export const SLICE_POOL_START = '10.129.0.0';
export const SLICE_PREFIX = 24;

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  prefix: number;
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw badAddress(ip);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw badAddress(ip);
    n = n * 256 + Number(p);
  }
  return n >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function parseCidr(cidr: string): Cidr {
  const [ip, len] = cidr.split('/');
  const prefix = len === undefined ? 32 : Number(len);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32 || (len !== undefined && !/^\d+$/.test(len))) {
    throw badAddress(cidr);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ipToInt(ip as string) & mask) >>> 0, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${intToIp(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

/** True when `ip` (an address or a CIDR) lies inside `cidr`. */
export function cidrContains(cidr: string | Cidr, ip: string): boolean {
  const c = typeof cidr === 'string' ? parseCidr(cidr) : cidr;
  const inner = parseCidr(ip);
  if (inner.prefix < c.prefix) return false;
  return inner.base >= c.base && inner.base < c.base + cidrSize(c);
}

/** True when the two ranges share any address. */
export function cidrOverlaps(a: string, b: string): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** True when `ip` is inside formnet. */
export function isFormnetAddress(ip: string): boolean {
  return cidrContains(FORMNET_CIDR, ip);
}

function badAddress(s: string): FormError {
  return new FormError('BAD_REQUEST', `Cannot parse address ${JSON.stringify(s)}: expected a.b.c.d or a.b.c.d/len`);
}

function poolFull(what: string): FormError {
  return new FormError('CONFLICT', `Cannot allocate ${what}: the pool is exhausted`);
}

/**
 * The member address for `id` (a node or developer address): starts at a hash of the id and probes
 * upward, so concurrent joins of different ids rarely collide; skips the pool's first address (.0.0,
 * never used) and anything taken. Returns a bare IPv4 address.
 *
 * @example allocateMemberAddress('0xabc…', new Set(['10.128.0.1'])) // '10.128.93.17'
 */
export function allocateMemberAddress(id: string, taken: Iterable<string>, pool: string = MEMBER_POOL): string {
  const c = parseCidr(pool);
  const size = cidrSize(c);
  const used = new Set<number>();
  for (const t of taken) used.add(parseCidr(t).base);
  const start = createHash('sha256').update(id).digest().readUInt32BE(0) % size;
  for (let i = 0; i < size; i++) {
    const off = (start + i) % size;
    // Not the network or broadcast address of the pool, nor .0 / .255 of any /24 (old stacks dislike them).
    if ((off & 255) === 0 || (off & 255) === 255) continue;
    const ip = c.base + off;
    if (!used.has(ip)) return intToIp(ip);
  }
  throw poolFull(`a member address in ${pool}`);
}

/** Instance slice number `index` (0-based): 10.129.0.0/24, 10.129.1.0/24, … */
export function sliceAt(index: number): string {
  const base = ipToInt(SLICE_POOL_START) + index * 2 ** (32 - SLICE_PREFIX);
  if (!Number.isInteger(index) || index < 0 || !cidrContains(FORMNET_CIDR, intToIp(base))) {
    throw poolFull('an instance slice');
  }
  return `${intToIp(base)}/${SLICE_PREFIX}`;
}

/** The lowest instance slice (a /24) not in `taken`. */
export function allocateNodeSlice(taken: Iterable<string>): string {
  const used = new Set([...taken].map((t) => formatCidr(parseCidr(t))));
  for (let i = 0; ; i++) {
    const s = sliceAt(i); // throws when formnet is exhausted
    if (!used.has(s)) return s;
  }
}

/** The node's own address inside its slice (`.1`, its bridge). */
export function sliceGateway(slice: string): string {
  return intToIp(parseCidr(slice).base + 1);
}

/** The lowest free instance address (`.2`–`.254`) in `slice`. */
export function allocateInstanceAddress(slice: string, taken: Iterable<string>): string {
  const c = parseCidr(slice);
  const used = new Set([...taken].map((t) => parseCidr(t).base));
  for (let off = 2; off < cidrSize(c) - 1; off++) {
    if (!used.has(c.base + off)) return intToIp(c.base + off);
  }
  throw poolFull(`an instance address in ${slice}`);
}

/** An allocation claim as recorded in state. `seq` orders claims (e.g. the op's logical time). */
export interface AddressClaim {
  /** Who claims (member id). */
  id: string;
  /** The address or range claimed. */
  address: string;
  seq: number;
  /** Tie-breaker for equal `seq` (e.g. the op hash). */
  tiebreak?: string;
}

/**
 * Decide claims deterministically: ordered by (seq, tiebreak, id), a claim wins unless its range
 * overlaps one that already won, or its claimant already holds a winning claim of the same kind.
 * Losers must claim again. The same input gives the same output on every node, in any order.
 */
export function resolveClaims(claims: readonly AddressClaim[]): { winners: AddressClaim[]; losers: AddressClaim[] } {
  const sorted = [...claims].sort(
    (a, b) =>
      a.seq - b.seq ||
      (a.tiebreak ?? '').localeCompare(b.tiebreak ?? '') ||
      a.id.localeCompare(b.id) ||
      a.address.localeCompare(b.address),
  );
  const winners: AddressClaim[] = [];
  const losers: AddressClaim[] = [];
  const holders = new Set<string>();
  for (const c of sorted) {
    if (holders.has(c.id) || winners.some((w) => cidrOverlaps(w.address, c.address))) losers.push(c);
    else {
      winners.push(c);
      holders.add(c.id);
    }
  }
  return { winners, losers };
}
