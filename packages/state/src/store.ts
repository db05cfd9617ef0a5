import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { actingPublicKey, type KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { apiProblem } from './api-problem.ts';
import { authorize, type DepView, domainTokenOf, instanceIdOf } from './kinds.ts';
import { createOp, encodeOp, type Op, type OpKind } from './op.ts';
import { badSignature, HEX64, parseUnverified, type Rejected } from './op-parse.ts';
import { refsFor, withDelegation } from './op-refs.ts';
import { PendingBuffer } from './pending.ts';
import { PresenceBook } from './presence.ts';
import { VerifyPool } from './verify-pool.ts';
import type { NetworkView, Views } from './views.ts';
import { ViewState } from './views.ts';

// The parts that need no store, re-exported where importers found them.
export { apiProblem } from './api-problem.ts';
export { parseOp, parseUnverified, type RejectCode, type Rejected } from './op-parse.ts';
export { refsFor, withDelegation } from './op-refs.ts';

export interface ApplyResult {
  /** Newly accepted, in the order they were applied (a topological order). */
  accepted: string[];
  rejected: Rejected[];
  /** Parked until their dependencies arrive. */
  pending: string[];
  /** Already held: ignored (replays are idempotent). */
  duplicates: string[];
}

export interface StateStoreOptions {
  /** SQLite file (created with its directory), or ':memory:' for tests. */
  path: string;
  logger?: Logger;
  /** DNS domain for derived names. */
  domain?: string;
  /** 'full' (default): fsync on every commit, survives power loss. 'normal': survives process crashes. */
  durability?: 'full' | 'normal';
  /** Bounds of the buffer of ops waiting for dependencies. */
  pendingMaxOps?: number;
  pendingMaxBytes?: number;
  /** Worker threads verifying signatures of big batches (≥ 128 ops); default: cores - 1, at most 3. 0 = inline. */
  verifyThreads?: number;
  /**
   * Hash of the network's `network.init` (genesis). Without it the store follows the genesis it
   * persisted, else adopts the first `network.init` it accepts (trust on first use: the node you
   * join) and persists it. A store that holds no genesis is a `legacy-open` network.
   */
  genesis?: string;
  /** Ops dated more than this ahead of `now()` are refused (every path: API, gossip, sync). Default 5 min. */
  maxFutureMs?: number;
  /** The clock (ms) for the future-date check and heartbeat freshness; default Date.now. */
  now?: () => number;
}

/** Default for `maxFutureMs`: how far ahead of this node's clock an op may be dated. */
export const MAX_FUTURE_MS = 5 * 60_000;

/** Per-op metadata kept in memory: enough for dependency checks, heads and sync. */
interface Meta {
  depth: number;
  deps: string[];
  author: string;
  kind: OpKind;
  /** Kept only for ops that later ops may cite as proof (creates, claims, registrations). */
  body: Record<string, unknown> | undefined;
}

const REFERABLE = new Set<OpKind>([
  'instance.create',
  'instance.claim',
  'node.register',
  'network.init',
  'dns.claim',
  'port.claim',
]);

/**
 * The replicated state: an append-only set of signed ops in SQLite, with views folded in memory.
 * See README for the rules. Open with `openStateStore`.
 */
export class StateStore {
  readonly path: string;
  private readonly db: DatabaseSync;
  private readonly log: Logger | undefined;
  private readonly domain: string | undefined;
  private readonly stmts: { insert: StatementSync; get: StatementSync; count: StatementSync };
  private dag = new Map<string, Meta>();
  private headSet = new Set<string>();
  private viewState: ViewState;
  /** The views without delegated ops, and the delegated ops: a revocation refolds from these. */
  private baseViews: ViewState;
  private delegatedOps: Array<{ op: Op; depth: number }> = [];
  private readonly pendingBuf: PendingBuffer;
  private readonly listeners = new Set<(op: Op) => void>();
  private readonly verifier: VerifyPool;
  private closed = false;
  private genesisHash: string | undefined;
  private needsRebuild = false;
  private readonly maxFutureMs: number;
  readonly now: () => number;

  constructor(opts: StateStoreOptions) {
    this.path = opts.path;
    this.log = opts.logger?.child({ component: 'state' });
    this.domain = opts.domain;
    if (opts.path !== ':memory:') mkdirSync(dirname(opts.path), { recursive: true });
    this.db = new DatabaseSync(opts.path);
    this.db.exec('PRAGMA busy_timeout = 5000');
    this.db.exec('PRAGMA journal_mode = WAL');
    this.db.exec(`PRAGMA synchronous = ${opts.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    this.db.exec(`CREATE TABLE IF NOT EXISTS ops (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      hash TEXT NOT NULL UNIQUE,
      depth INTEGER NOT NULL,
      data TEXT NOT NULL,
      sig TEXT NOT NULL
    )`);
    this.db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const persisted = (
      this.db.prepare("SELECT value FROM meta WHERE key = 'genesis'").get() as { value: string } | undefined
    )?.value;
    if (opts.genesis !== undefined && !HEX64.test(opts.genesis)) {
      throw new FormError('CONFIG_INVALID', `Cannot open the state: genesis ${opts.genesis} is not a sha256 hash`);
    }
    if (opts.genesis && persisted && opts.genesis !== persisted) {
      this.db.close();
      throw new FormError(
        'CONFLICT',
        `Cannot open the state at ${opts.path}: it follows genesis ${persisted}, not ${opts.genesis}`,
        { hint: 'This data directory belongs to another network: use another one, or the matching genesis.' },
      );
    }
    this.genesisHash = opts.genesis ?? persisted;
    if (opts.genesis && !persisted) this.persistGenesis(opts.genesis);
    this.maxFutureMs = opts.maxFutureMs ?? MAX_FUTURE_MS;
    this.now = opts.now ?? Date.now;
    this.stmts = {
      insert: this.db.prepare('INSERT INTO ops (hash, depth, data, sig) VALUES (?, ?, ?, ?)'),
      get: this.db.prepare('SELECT data, sig FROM ops WHERE hash = ?'),
      count: this.db.prepare('SELECT COUNT(*) AS n FROM ops'),
    };
    this.pendingBuf = new PendingBuffer(opts.pendingMaxOps, opts.pendingMaxBytes);
    this.verifier = new VerifyPool(opts.verifyThreads);
    this.viewState = new ViewState(this.domain, this.genesisHash);
    this.baseViews = new ViewState(this.domain, this.genesisHash);
    this.load();
  }

  private persistGenesis(hash: string): void {
    this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('genesis', ?)").run(hash);
  }

  /** The genesis (network.init hash) this store follows, if any. */
  get genesis(): string | undefined {
    return this.genesisHash;
  }

  /** Rebuild the in-memory index and views from disk (ops on disk were verified when accepted). */
  private load(): void {
    this.dag = new Map();
    this.headSet = new Set();
    this.viewState = new ViewState(this.domain, this.genesisHash);
    this.baseViews = new ViewState(this.domain, this.genesisHash);
    this.delegatedOps = [];
    // Revocations first: whether a delegated op counts depends on them, whatever the order on disk.
    const rows = () =>
      this.db.prepare('SELECT hash, depth, data, sig FROM ops ORDER BY seq').iterate() as Iterable<{
        hash: string;
        depth: number;
        data: string;
        sig: string;
      }>;
    const parse = (row: { hash: string; data: string; sig: string }) =>
      ({ ...(JSON.parse(row.data) as Omit<Op, 'sig' | 'hash'>), sig: row.sig, hash: row.hash }) as Op;
    for (const row of rows()) {
      if (row.data.includes('"kind":"delegation.revoke"')) {
        const op = parse(row);
        if (op.kind === 'delegation.revoke') {
          this.viewState.apply(op, row.depth);
          this.baseViews.apply(op, row.depth);
        }
      }
    }
    for (const row of rows()) this.index(parse(row), row.depth);
    this.needsRebuild = false;
    this.log?.info({ ops: this.dag.size }, 'state loaded');
  }

  private index(op: Op, depth: number): void {
    this.dag.set(op.hash, {
      depth,
      deps: op.deps,
      author: op.author,
      kind: op.kind,
      body: REFERABLE.has(op.kind) ? op.body : undefined,
    });
    for (const d of op.deps) this.headSet.delete(d);
    this.headSet.add(op.hash);
    if (op.body.onBehalfOf === undefined) this.baseViews.apply(op, depth);
    else this.delegatedOps.push({ op, depth });
    // A revocation that un-counts delegated ops already folded in: refold (after the batch) from the
    // views without delegated ops plus the delegated ops that still count: O(views), not O(log).
    if (this.viewState.apply(op, depth) === 'rebuild') this.needsRebuild = true;
  }

  private refold(): void {
    const v = this.baseViews.clone();
    for (const { op, depth } of this.delegatedOps) v.apply(op, depth);
    this.viewState = v;
    this.needsRebuild = false;
  }

  /** Number of accepted ops. */
  get size(): number {
    return this.dag.size;
  }

  /** True when the op is accepted here. */
  has(hash: string): boolean {
    return this.dag.has(hash);
  }

  /** Hashes of accepted ops that no accepted op depends on, sorted. Use them as deps of a new op. */
  heads(): string[] {
    return [...this.headSet].sort();
  }

  /** sha256 of the canonical views: two replicas with equal digests hold equal state. */
  digest(): string {
    return this.viewState.digest();
  }

  /**
   * All views: a deterministic function of the accepted op set, except that each node's `heartbeat`
   * shows its newest gossiped presence when that is newer (`presence`; not part of `digest()`).
   */
  views(now: number = this.now()): Views {
    const v = this.viewState.views();
    let nodes = this.presence.overlay(v.nodes);
    // A beat dated in the future is no beat: it must never count as fresher than now.
    const skew = Number.isFinite(this.maxFutureMs) ? this.maxFutureMs : MAX_FUTURE_MS;
    if (nodes.some((n) => n.heartbeat && n.heartbeat.ts > now + skew)) {
      nodes = nodes.map((n) => (n.heartbeat && n.heartbeat.ts > now + skew ? { ...n, heartbeat: null } : n));
    }
    return nodes === v.nodes ? v : { ...v, nodes };
  }

  /** How far ahead of `now()` an op may be dated here (for the scheduler's health rule). */
  get maxFutureSkewMs(): number {
    return this.maxFutureMs;
  }

  /** Liveness from gossiped presence messages (memory only). See presence.ts. */
  readonly presence = new PresenceBook();

  /** The view state, for lookups (instance creates, claims, registrations). */
  get viewIndex(): ViewState {
    return this.viewState;
  }

  /** Pending buffer statistics. */
  pendingStats(): { ops: number; bytes: number; evicted: number; missing: string[] } {
    return {
      ops: this.pendingBuf.size,
      bytes: this.pendingBuf.totalBytes,
      evicted: this.pendingBuf.evicted,
      missing: this.pendingBuf.missing(100),
    };
  }

  /** Accepted ops by hash (unknown hashes are skipped). */
  getOps(hashes: readonly string[]): Op[] {
    const out: Op[] = [];
    for (const h of hashes) {
      const op = this.getOp(h);
      if (op) out.push(op);
    }
    return out;
  }

  getOp(hash: string): Op | undefined {
    if (!this.dag.has(hash)) return undefined;
    const row = this.stmts.get.get(hash) as { data: string; sig: string } | undefined;
    if (!row) return undefined;
    return { ...(JSON.parse(row.data) as Omit<Op, 'sig' | 'hash'>), sig: row.sig, hash };
  }

  /**
   * Ops this replica holds that a replica with heads `remoteHeads` lacks, in topological order
   * (by depth, then hash), at most `limit`. Heads unknown here are ignored. Apply the result in order;
   * call again with the new heads while a full page comes back.
   */
  opsSince(remoteHeads: readonly string[], limit = 1000): Op[] {
    const have = new Set<string>();
    const stack = remoteHeads.filter((h) => this.dag.has(h));
    while (stack.length) {
      const h = stack.pop() as string;
      if (have.has(h)) continue;
      have.add(h);
      for (const d of (this.dag.get(h) as Meta).deps) if (!have.has(d)) stack.push(d);
    }
    const missing: Array<[number, string]> = [];
    for (const [h, m] of this.dag) if (!have.has(h)) missing.push([m.depth, h]);
    missing.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    return this.getOps(missing.slice(0, Math.max(0, limit)).map((x) => x[1]));
  }

  /** Call `fn` after each op is accepted and committed (never for rejected or pending ones). */
  onAccepted(fn: (op: Op) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Verify and apply ops (any order, duplicates allowed) in one transaction. Ops whose deps are
   * missing are parked; they are applied as soon as their deps arrive (in this or a later call).
   */
  applyBatch(inputs: readonly unknown[]): ApplyResult {
    if (this.closed) throw new FormError('UNAVAILABLE', 'Cannot apply ops: the state store is closed');
    const result: ApplyResult = { accepted: [], rejected: [], pending: [], duplicates: [] };
    const acceptedOps: Op[] = [];
    // Parse everything, then check the signatures of the new ones (in parallel for big batches).
    const horizon = this.now() + this.maxFutureMs;
    const parsed = inputs.map((input) => {
      const p = parseUnverified(input);
      if ('code' in p || p.op.ts <= horizon) return p;
      return {
        hash: p.op.hash,
        code: 'STATE_OP_INVALID' as const,
        reason: `op is dated ${Math.round((p.op.ts - (horizon - this.maxFutureMs)) / 1000)} s in the future, ahead of this node's clock by more than ${Math.round(this.maxFutureMs / 1000)} s (check the signer's clock)`,
      };
    });
    // A genesis applies first: the store adopts it (trust on first use) before judging the rest.
    parsed.sort(
      (x, y) =>
        Number(!('op' in x) || x.op.kind !== 'network.init') - Number(!('op' in y) || y.op.kind !== 'network.init'),
    );
    const toVerify: number[] = [];
    parsed.forEach((p, i) => {
      if (!('code' in p) && !this.dag.has(p.op.hash) && !this.pendingBuf.has(p.op.hash)) toVerify.push(i);
    });
    const verdicts = this.verifier.verifyAll(
      toVerify.map((i) => {
        const p = parsed[i] as { op: Op; bytes: string };
        return { author: p.op.author, bytes: p.bytes, sig: p.op.sig };
      }),
    );
    toVerify.forEach((i, k) => {
      if (!verdicts[k]) parsed[i] = badSignature((parsed[i] as { op: Op }).op.hash);
    });
    this.db.exec('BEGIN IMMEDIATE');
    try {
      for (const p of parsed) {
        if ('code' in p) {
          result.rejected.push(p);
          continue;
        }
        const { op, size } = p;
        if (this.dag.has(op.hash)) {
          result.duplicates.push(op.hash);
          continue;
        }
        if (this.pendingBuf.has(op.hash)) {
          result.pending.push(op.hash);
          continue;
        }
        const missing = op.deps.filter((d) => !this.dag.has(d));
        if (missing.length) {
          this.pendingBuf.add(op, missing, size);
          result.pending.push(op.hash);
          continue;
        }
        const work = [op];
        while (work.length) {
          const next = work.shift() as Op;
          if (this.dag.has(next.hash)) continue;
          const rej = this.check(next);
          if (rej) {
            result.rejected.push(rej);
            continue;
          }
          this.insert(next);
          acceptedOps.push(next);
          result.accepted.push(next.hash);
          work.push(...this.pendingBuf.resolve(next.hash));
        }
      }
      this.db.exec('COMMIT');
      if (this.needsRebuild) this.refold();
    } catch (err) {
      try {
        this.db.exec('ROLLBACK');
      } catch {
        // already rolled back by SQLite
      }
      this.load(); // memory must match disk again
      throw new FormError('INTERNAL', `Cannot apply ops: ${(err as Error).message}`, { cause: err });
    }
    result.pending = result.pending.filter((h) => this.pendingBuf.has(h));
    for (const op of acceptedOps) {
      for (const fn of this.listeners) {
        try {
          fn(op);
        } catch (err) {
          this.log?.warn({ err }, 'onAccepted listener failed');
        }
      }
    }
    if (result.rejected.length) this.log?.debug({ rejected: result.rejected }, 'ops rejected');
    return result;
  }

  /** Apply one op; throws a FormError (401/403/422) when it is rejected. */
  submit(input: unknown): { status: 'accepted' | 'duplicate' | 'pending'; hash: string; missing?: string[] } {
    const r = this.applyBatch([input]);
    const rej = r.rejected[0];
    if (rej) {
      throw new FormError(rej.code, `Cannot accept op ${rej.hash || '(unhashable)'}: ${rej.reason}`, {
        details: { hash: rej.hash },
      });
    }
    if (r.duplicates[0]) return { status: 'duplicate', hash: r.duplicates[0] };
    if (r.pending[0]) {
      const op = input as Op;
      return { status: 'pending', hash: r.pending[0], missing: op.deps.filter((d) => !this.dag.has(d)) };
    }
    return { status: 'accepted', hash: r.accepted[0] as string };
  }

  /**
   * Author, sign and apply an op with `key`: deps = current heads plus any op it must cite (the
   * instance's create, the node's own claim or registration). For `instance.create` an absent `id`
   * is filled with `instanceIdOf(author, name, ts)`. Throws when rejected.
   *
   * @example const op = store.author(nodeKey, 'node.heartbeat', { status: 'healthy' });
   */
  author(key: KeyPair, kind: OpKind, body: Record<string, unknown>, ts: number = Date.now()): Op {
    const b = withDelegation(key, kind, body);
    const actor = actingPublicKey(key);
    if (kind === 'instance.create' && b.id === undefined) b.id = instanceIdOf(actor, String(b.name), ts);
    if (kind === 'dns.claim' && b.token === undefined) b.token = domainTokenOf(actor, String(b.name), ts);
    const refs = refsFor(this.viewState, kind === 'formnet.allocate' ? key.publicKey : actor, kind, b);
    const op = createOp(key, kind, b, kind === 'network.init' ? [] : [...this.heads(), ...refs], ts);
    const problem = this.apiProblem(op);
    if (problem) throw problem;
    this.submit(op);
    return op;
  }

  /**
   * The lowest address of `cidr` (e.g. a node's formnetRange) that no allocation holds, skipping the
   * network and broadcast addresses; undefined when full. Allocate it with `formnet.allocate`, then
   * check `views().allocations`: if a concurrent allocation won the address, allocate another.
   */
  freeAddress(cidr: string): string | undefined {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr);
    if (!m) throw new FormError('BAD_REQUEST', `Cannot pick an address from ${cidr}: not an IPv4 CIDR`);
    const bits = Number(m[5]);
    const size = 2 ** (32 - bits);
    const ip = ((Number(m[1]) * 256 + Number(m[2])) * 256 + Number(m[3])) * 256 + Number(m[4]);
    const base = ip - (ip % size);
    const v = this.views();
    // Contested addresses are nobody's, but allocating one again would only stay contested.
    const taken = new Set([
      ...v.allocations.map((a) => a.address),
      ...v.conflicts.filter((c) => c.kind === 'address').map((c) => c.key),
    ]);
    for (let i = 1; i < size - 1; i++) {
      const x = base + i;
      const candidate = [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join('.');
      if (!taken.has(candidate)) return candidate;
    }
    return undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.verifier.close();
    this.db.close();
  }

  private check(op: Op): Rejected | null {
    const deps: DepView[] = [];
    for (const d of op.deps) {
      const m = this.dag.get(d) as Meta;
      if (m.body) deps.push({ hash: d, author: m.author, kind: m.kind, body: m.body });
    }
    const rej = authorize(op, deps);
    if (rej) return { hash: op.hash, ...rej };
    // Which genesis counts is not decided by rank (anyone can make one): this store's genesis only.
    const forbid = (reason: string): Rejected => ({ hash: op.hash, code: 'STATE_OP_FORBIDDEN', reason });
    if (op.kind === 'network.init') {
      if (this.genesisHash) {
        return op.hash === this.genesisHash
          ? null
          : forbid(
              `network.init: this store follows genesis ${this.genesisHash}; ${op.hash} belongs to another network`,
            );
      }
      if (this.viewState.hasRegisteredNodes()) {
        return forbid(
          'network.init: this store already runs a legacy network (nodes registered without a genesis); open it with the genesis option to follow one',
        );
      }
      return null;
    }
    for (const d of deps) {
      if (d.kind === 'network.init' && d.hash !== this.genesisHash) {
        return forbid(`${op.kind}: cites network.init ${d.hash}, which is not this network's genesis`);
      }
    }
    return null;
  }

  private insert(op: Op): void {
    if (op.kind === 'network.init' && !this.genesisHash) {
      this.genesisHash = op.hash;
      this.persistGenesis(op.hash);
      this.viewState.setGenesis(op.hash);
      this.baseViews.setGenesis(op.hash);
    }
    let depth = 0;
    for (const d of op.deps) depth = Math.max(depth, (this.dag.get(d) as Meta).depth + 1);
    this.stmts.insert.run(op.hash, depth, encodeOp(op), op.sig);
    this.index(op, depth);
  }

  /**
   * Why the state API refuses a new op that the rules alone would accept, judged against what this
   * replica holds now (api-problem.ts); null when it does not. Call it before `submit` for ops from clients.
   */
  apiProblem(input: unknown): FormError | null {
    return apiProblem(this.viewState, input);
  }

  /** Ops on disk (for tests and stats). */
  countOnDisk(): number {
    return (this.stmts.count.get() as { n: number }).n;
  }
}

/** The network this state follows: genesis hash, admission policy, admins, quotas, pending nodes. */
export function networkView(store: StateStore): NetworkView {
  return store.views().network;
}

/** Open (or create) the state store at `path`. */
export function openStateStore(opts: StateStoreOptions): StateStore {
  return new StateStore(opts);
}
