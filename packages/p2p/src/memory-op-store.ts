import { type KeyPair, sha256Hex, sign, verify } from '@formation/identity';
import type { ApplyResult, Op, OpStore } from './op-store.ts';

/**
 * A reference `OpStore` kept in memory, for p2p tests and benches: signed ops forming a DAG
 * (`parents`), accepted only when the hash and the author's signature check out and every parent is
 * present. The real store is `@formation/state`; both must pass the same p2p tests.
 */
export interface SignedTestOp extends Op {
  parents: string[];
  author: string;
  body: unknown;
  sig: string;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

function opHash(op: { parents: string[]; author: string; body: unknown }): string {
  return sha256Hex(canonical({ parents: op.parents, author: op.author, body: op.body }));
}

/** Make a signed op by `key` on top of `parents` (`signWith` another key only to forge one in tests). */
export function createSignedOp(key: KeyPair, body: unknown, parents: string[], signWith: KeyPair = key): SignedTestOp {
  const unsigned = { parents: [...parents].sort(), author: key.publicKey, body };
  const hash = opHash(unsigned);
  return { hash, ...unsigned, sig: sign(signWith.privateKey, hash) };
}

function checkOp(op: Op): op is SignedTestOp {
  const o = op as Partial<SignedTestOp>;
  if (!Array.isArray(o.parents) || typeof o.author !== 'string' || typeof o.sig !== 'string') return false;
  if (!o.parents.every((p) => typeof p === 'string')) return false;
  if (opHash(o as SignedTestOp) !== op.hash) return false;
  return verify(o.author, op.hash, o.sig);
}

export class MemoryOpStore implements OpStore {
  private readonly ops = new Map<string, SignedTestOp>(); // insertion order = a topological order
  private readonly children = new Map<string, number>();
  private readonly waiting = new Map<string, SignedTestOp>();
  private readonly listeners = new Set<(op: Op) => void>();

  /** Sign and add a local op on top of the current heads. */
  append(key: KeyPair, body: unknown): SignedTestOp {
    const op = createSignedOp(key, body, this.heads());
    this.applyBatch([op]);
    return op;
  }

  has(hash: string): boolean {
    return this.ops.has(hash);
  }

  size(): number {
    return this.ops.size;
  }

  /** A digest of the accepted op set (order independent). */
  digest(): string {
    return sha256Hex([...this.ops.keys()].sort().join('\n'));
  }

  heads(): string[] {
    return [...this.ops.keys()].filter((h) => !this.children.get(h)).sort();
  }

  opsSince(heads: string[], limit: number): Op[] {
    const known = new Set<string>();
    const stack = heads.filter((h) => this.ops.has(h));
    while (stack.length) {
      const h = stack.pop() as string;
      if (known.has(h)) continue;
      known.add(h);
      for (const p of this.ops.get(h)?.parents ?? []) stack.push(p);
    }
    const out: Op[] = [];
    for (const [h, op] of this.ops) {
      if (out.length >= limit) break;
      if (!known.has(h)) out.push(op);
    }
    return out;
  }

  getOps(hashes: string[]): Op[] {
    return hashes.flatMap((h) => {
      const op = this.ops.get(h);
      return op ? [op] : [];
    });
  }

  applyBatch(batch: Op[]): ApplyResult {
    const accepted: string[] = [];
    const rejected: { hash: string; reason: string }[] = [];
    for (const op of batch) {
      if (this.ops.has(op.hash)) {
        accepted.push(op.hash);
        continue;
      }
      if (!checkOp(op)) {
        rejected.push({ hash: op.hash, reason: 'bad hash or signature' });
        continue;
      }
      this.waiting.set(op.hash, op);
    }
    // Admit waiting ops whose parents are all present, until nothing more moves.
    let moved = true;
    while (moved) {
      moved = false;
      for (const [h, op] of this.waiting) {
        if (!op.parents.every((p) => this.ops.has(p))) continue;
        this.waiting.delete(h);
        this.ops.set(h, op);
        for (const p of op.parents) this.children.set(p, (this.children.get(p) ?? 0) + 1);
        accepted.push(h);
        moved = true;
        for (const cb of this.listeners) cb(op);
      }
    }
    const pending = batch.map((o) => o.hash).filter((h) => this.waiting.has(h));
    return { accepted, rejected, pending };
  }

  onAccepted(cb: (op: Op) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}
