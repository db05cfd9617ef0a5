import { sha256Hex } from '@formation/identity';
import { DEFAULT_DOMAIN } from '@formation/interface';
import { canonicalJson } from './canonical.ts';
import type { Op } from './op.ts';
import { type FoldState, foldOp, newFoldState } from './views-fold.ts';
import { renderViews } from './views-render.ts';
import type { Views } from './views-types.ts';

export * from './views-types.ts';

/**
 * The state's views, kept as a fold of the accepted ops: `apply` folds an op in (views-fold.ts, a
 * join-semilattice: any delivery order of the same ops gives the same state), `views()` renders the
 * public views (views-render.ts, views-names.ts) and caches them until the next apply.
 */
export class ViewState {
  readonly domain: string;
  private s: FoldState = newFoldState();
  private genesisHash: string | undefined;
  private cache: { views: Views; digest: string } | undefined;

  constructor(domain: string = DEFAULT_DOMAIN, genesis?: string) {
    this.domain = domain;
    this.genesisHash = genesis;
  }

  /** A deep copy (the fold state is plain Maps, Sets and records). */
  clone(): ViewState {
    const v = new ViewState(this.domain, this.genesisHash);
    v.s = structuredClone(this.s);
    return v;
  }

  /** The genesis this state follows (set once, when the store adopts one). */
  setGenesis(hash: string): void {
    this.cache = undefined;
    this.genesisHash = hash;
  }

  get genesis(): string | undefined {
    return this.genesisHash;
  }

  /** Does any node.register exist (a network already in use)? */
  hasRegisteredNodes(): boolean {
    for (const n of this.s.nodes.values()) if (n.registered) return true;
    return false;
  }

  /** Earliest revocation ts of `owner`'s delegations to `delegate`, if any. */
  revokedAt(owner: string, delegate: string): number | undefined {
    return this.s.revocations.get(`${owner}/${delegate}`);
  }

  /**
   * Fold one accepted op in. Idempotent and order-independent. Returns 'rebuild' when a revocation
   * un-counts delegated ops already folded in: the caller must fold all ops again (revocations first).
   */
  apply(op: Op, depth: number): 'rebuild' | undefined {
    this.cache = undefined;
    return foldOp(this.s, op, depth);
  }

  /** The public views (cached until the next apply). */
  views(): Views {
    return this.rendered().views;
  }

  /** sha256 of the canonical encoding of `views()`: equal digests = equal state. */
  digest(): string {
    return this.rendered().digest;
  }

  /** Hash of the winning create of an instance, if known (used to build deps). */
  instanceCreate(id: string): { hash: string; author: string } | undefined {
    const c = this.s.instances.get(id)?.create;
    return c ? { hash: c.hash, author: c.value.author } : undefined;
  }

  /** Hash of `node`'s claim on an instance, if any. */
  claimOf(instanceId: string, node: string): string | undefined {
    return this.s.instances.get(instanceId)?.claims.get(node)?.hash;
  }

  /**
   * The latest node.admit / node.remove about `node`, if any (registered or not): whether it is
   * admitted and the slice its admin gave it. A joining node waits on this before it boots anything.
   */
  admissionOf(node: string): { admitted: boolean; formnetRange: string | null } | undefined {
    return this.s.admission.get(node)?.value;
  }

  /** Hash of `node`'s node.register, if any. */
  registrationOf(node: string): string | undefined {
    return this.s.nodes.get(node)?.registered?.hash;
  }

  private rendered(): { views: Views; digest: string } {
    if (this.cache) return this.cache;
    const views = renderViews(this.s, this.domain, this.genesisHash);
    this.cache = { views, digest: sha256Hex(canonicalJson(views)) };
    return this.cache;
  }
}
