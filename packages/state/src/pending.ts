import { getOrSet } from './maps.ts';
import type { Op } from './op.ts';

interface Waiting {
  op: Op;
  size: number;
  missing: Set<string>;
}

/**
 * Ops whose dependencies have not arrived yet, keyed by the hashes they wait for. Bounded by count and
 * bytes: when full, the oldest waiting op is dropped (it can be fetched again by sync), so a flood of
 * orphans costs at most `maxBytes` of memory.
 */
export class PendingBuffer {
  readonly maxOps: number;
  readonly maxBytes: number;
  private readonly byHash = new Map<string, Waiting>();
  private readonly waitingOn = new Map<string, Set<string>>();
  private bytes = 0;
  /** Ops dropped to stay within bounds, since start. */
  evicted = 0;

  constructor(maxOps = 10_000, maxBytes = 16 * 1024 * 1024) {
    this.maxOps = maxOps;
    this.maxBytes = maxBytes;
  }

  get size(): number {
    return this.byHash.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  has(hash: string): boolean {
    return this.byHash.has(hash);
  }

  /** Park `op` until every hash in `missing` is accepted. */
  add(op: Op, missing: readonly string[], size: number): void {
    if (this.byHash.has(op.hash)) return;
    while (this.byHash.size > 0 && (this.byHash.size >= this.maxOps || this.bytes + size > this.maxBytes)) {
      this.drop(this.byHash.keys().next().value as string);
      this.evicted++;
    }
    this.byHash.set(op.hash, { op, size, missing: new Set(missing) });
    this.bytes += size;
    for (const m of missing) {
      const s = getOrSet(this.waitingOn, m, () => new Set());
      s.add(op.hash);
    }
  }

  /** `hash` was accepted: return the ops that no longer wait for anything (and forget them). */
  resolve(hash: string): Op[] {
    const waiters = this.waitingOn.get(hash);
    if (!waiters) return [];
    this.waitingOn.delete(hash);
    const ready: Op[] = [];
    for (const w of waiters) {
      const entry = this.byHash.get(w);
      if (!entry) continue;
      entry.missing.delete(hash);
      if (entry.missing.size === 0) {
        this.drop(w);
        ready.push(entry.op);
      }
    }
    return ready;
  }

  /** Hashes some parked op waits for (what to ask peers for). */
  missing(limit = 1000): string[] {
    return [...this.waitingOn.keys()].slice(0, limit);
  }

  private drop(hash: string): void {
    const e = this.byHash.get(hash);
    if (!e) return;
    this.byHash.delete(hash);
    this.bytes -= e.size;
    for (const m of e.missing) {
      const s = this.waitingOn.get(m);
      if (!s) continue;
      s.delete(hash);
      if (s.size === 0) this.waitingOn.delete(m);
    }
  }

  clear(): void {
    this.byHash.clear();
    this.waitingOn.clear();
    this.bytes = 0;
  }
}
