import { actorOf } from './kinds.ts';
import { getOrSet } from './maps.ts';
import type { Op } from './op.ts';
import type { FailureEvidence, ReleaseRecord } from './releases.ts';
import type { InstanceView } from './views-types.ts';

/**
 * Views as join-semilattices: each op is folded in with an operation that is commutative, associative
 * and idempotent (max by (ts, hash), min by (depth, hash), set union), so the state after any delivery
 * order of the same op set is the same. `renderViews()` (views-render.ts) turns that state into the
 * public views; rules that join several entities (owner checks on explicit DNS, replica assignment) run
 * there, over the whole set.
 */

/** Last-writer-wins register: higher (ts, hash) wins. */
export interface Lww<T> {
  ts: number;
  hash: string;
  value: T;
}
/** First-wins register: lower (depth, hash) wins. `depth` = 1 + max depth of deps (0 without deps). */
export interface First<T> {
  depth: number;
  hash: string;
  value: T;
}

export function lww<T>(cur: Lww<T> | undefined, ts: number, hash: string, value: T): Lww<T> {
  return !cur || ts > cur.ts || (ts === cur.ts && hash > cur.hash) ? { ts, hash, value } : cur;
}
export function first<T>(cur: First<T> | undefined, depth: number, hash: string, value: T): First<T> {
  return !cur || depth < cur.depth || (depth === cur.depth && hash < cur.hash) ? { depth, hash, value } : cur;
}
export function setField<K, T>(m: Map<K, Lww<T>>, k: K, ts: number, hash: string, v: T): void {
  m.set(k, lww(m.get(k), ts, hash, v));
}

/** A comparator by a string key (ascending). */
export const byKey =
  <T>(key: (t: T) => string) =>
  (a: T, b: T) =>
    key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
/** Is `a` ranked before `b` by (depth, hash)? The first-wins order. */
export const rankLess = (a: { depth: number; hash: string }, b: { depth: number; hash: string }) =>
  a.depth < b.depth || (a.depth === b.depth && a.hash < b.hash);

export type Body = Record<string, unknown>;
export type Resources = InstanceView['resources'];

export interface NodeState {
  registered?: First<null>;
  fields: Map<string, Lww<unknown>>;
  heartbeat?: Lww<Body>;
}
export interface InstanceState {
  create?: First<{ author: string; body: Body; ts: number }>;
  fields: Map<string, Lww<unknown>>;
  deleted?: First<null>;
  claims: Map<string, First<null>>;
  status: Map<string, Lww<Body>>;
  commit?: { revision: number; ts: number; hash: string; value: string };
  /** Rolling updates: releases by number, the nodes' health reports, failure reports per release/node. */
  releases?: Map<number, Lww<ReleaseRecord>>;
  health?: Map<string, Lww<Body>>;
  failures?: Map<string, FailureEvidence>;
  /** Earliest healthy report per `release/node`: an unhealthy report after it is not a failed roll-out. */
  healthyAt?: Map<string, number>;
}
export interface DnsState {
  byAuthor: Map<string, Lww<Body>>;
}

/** What the ops fold into: plain Maps, Sets and records (so `structuredClone` copies it). */
export interface FoldState {
  nodes: Map<string, NodeState>;
  accounts: Map<string, Map<string, Lww<unknown>>>;
  authors: Set<string>;
  /** Keyed by `${owner address}/${id}`: each owner's publish is its own. */
  formpacks: Map<string, First<{ author: string; body: Body }>>;
  instances: Map<string, InstanceState>;
  peers: Map<string, Map<string, Lww<unknown>>>;
  /** address -> allocating node -> its first allocation of that address. */
  allocations: Map<string, Map<string, First<{ author: string; body: Body }>>>;
  dnsExplicit: Map<string, DnsState>;
  /** domain -> claiming account -> its latest dns.claim (with the op hash) or dns.release (null). */
  domainClaims: Map<string, Map<string, Lww<{ instanceId: string; token: string } | null>>>;
  /** dns.claim hash -> node -> its latest dns.verified (method) or dns.lapsed (reason). */
  domainVerified: Map<string, Map<string, Lww<{ method: string } | { reason: string }>>>;
  /** port -> claiming account -> its latest port.claim or port.release (null). */
  portClaims: Map<number, Map<string, Lww<{ instanceId: string; target: number } | null>>>;
  /** port.claim hash -> granting nodes. */
  portGrants: Map<string, Set<string>>;
  /** network.init bodies by hash (only the genesis counts). */
  inits: Map<string, Body>;
  /** node -> LWW of admit (with range) / remove. */
  admission: Map<string, Lww<{ admitted: boolean; formnetRange: string | null }>>;
  /** `${owner}/${delegate}` -> earliest revocation ts. */
  revocations: Map<string, number>;
  /** `${owner}/${delegate}` -> latest ts of a delegated op folded in. */
  delegatedTs: Map<string, number>;
}

export function newFoldState(): FoldState {
  return {
    nodes: new Map<string, NodeState>(),
    accounts: new Map<string, Map<string, Lww<unknown>>>(),
    authors: new Set<string>(),
    formpacks: new Map<string, First<{ author: string; body: Body }>>(),
    instances: new Map<string, InstanceState>(),
    peers: new Map<string, Map<string, Lww<unknown>>>(),
    allocations: new Map<string, Map<string, First<{ author: string; body: Body }>>>(),
    dnsExplicit: new Map<string, DnsState>(),
    domainClaims: new Map<string, Map<string, Lww<{ instanceId: string; token: string } | null>>>(),
    domainVerified: new Map<string, Map<string, Lww<{ method: string } | { reason: string }>>>(),
    portClaims: new Map<number, Map<string, Lww<{ instanceId: string; target: number } | null>>>(),
    portGrants: new Map<string, Set<string>>(),
    inits: new Map<string, Body>(),
    admission: new Map<string, Lww<{ admitted: boolean; formnetRange: string | null }>>(),
    revocations: new Map<string, number>(),
    delegatedTs: new Map<string, number>(),
  };
}

function nodeOf(s: FoldState, id: string): NodeState {
  return getOrSet(s.nodes, id, (): NodeState => ({ fields: new Map() }));
}

function instanceOf(s: FoldState, id: string): InstanceState {
  return getOrSet(s.instances, id, (): InstanceState => ({ fields: new Map(), claims: new Map(), status: new Map() }));
}

/**
 * Fold one accepted op into `s`. Idempotent and order-independent. Returns 'rebuild' when a revocation
 * un-counts delegated ops already folded in: the caller must fold all ops again (revocations first).
 */
export function foldOp(s: FoldState, op: Op, depth: number): 'rebuild' | undefined {
  const { hash: h, ts, body: b } = op;
  if (b.onBehalfOf !== undefined) {
    const k = `${actorOf(op)}/${op.author}`;
    const rev = s.revocations.get(k);
    if (rev !== undefined && ts > rev) return undefined; // revoked before: never counts
    s.delegatedTs.set(k, Math.max(ts, s.delegatedTs.get(k) ?? ts));
  }
  // The account the op acts for: a dashboard session's ops count as its delegating developer's.
  const a = actorOf(op);
  s.authors.add(a);
  switch (op.kind) {
    case 'network.init':
      s.inits.set(h, b);
      break;
    case 'node.admit':
    case 'node.remove': {
      const node = b.node as string;
      const value = { admitted: op.kind === 'node.admit', formnetRange: (b.formnetRange as string) ?? null };
      s.admission.set(node, lww(s.admission.get(node), ts, h, value));
      break;
    }
    case 'delegation.revoke': {
      const k = `${a}/${b.delegate as string}`;
      const cur = s.revocations.get(k);
      if (cur === undefined || ts < cur) {
        s.revocations.set(k, ts);
        if ((s.delegatedTs.get(k) ?? -1) > ts) return 'rebuild';
      }
      break;
    }
    case 'node.register':
    case 'node.update': {
      const n = nodeOf(s, a);
      if (op.kind === 'node.register') n.registered = first(n.registered, depth, h, null);
      for (const [k, v] of Object.entries(b)) setField(n.fields, k, ts, h, v);
      break;
    }
    case 'node.heartbeat': {
      const n = nodeOf(s, a);
      n.heartbeat = lww(n.heartbeat, ts, h, b);
      break;
    }
    case 'account.update': {
      const m = getOrSet(s.accounts, a, () => new Map());
      for (const [k, v] of Object.entries(b)) setField(m, k, ts, h, v);
      break;
    }
    case 'formpack.publish': {
      const k = `${b.owner as string}/${b.id as string}`;
      s.formpacks.set(k, first(s.formpacks.get(k), depth, h, { author: a, body: b }));
      break;
    }
    case 'instance.create': {
      const i = instanceOf(s, b.id as string);
      i.create = first(i.create, depth, h, { author: a, body: b, ts });
      break;
    }
    case 'instance.update': {
      const i = instanceOf(s, b.instanceId as string);
      for (const [k, v] of Object.entries(b)) {
        if (k !== 'instanceId' && k !== 'onBehalfOf') setField(i.fields, k, ts, h, v);
      }
      if (typeof b.release === 'number') {
        i.releases ??= new Map();
        const rec: ReleaseRecord = {
          release: b.release,
          formpackId: b.formpackId as string,
          resources: (b.resources as Resources | undefined) ?? { vcpu: 0, memMiB: 0, diskGiB: 0 },
          ts,
          actor: a,
          op: h,
          rollbackOf: (b.rollbackOf as number | undefined) ?? null,
        };
        i.releases.set(b.release, lww(i.releases.get(b.release), ts, h, rec));
      }
      break;
    }
    case 'instance.delete': {
      const i = instanceOf(s, b.instanceId as string);
      i.deleted = first(i.deleted, depth, h, null);
      break;
    }
    case 'instance.claim': {
      const i = instanceOf(s, b.instanceId as string);
      i.claims.set(a, first(i.claims.get(a), depth, h, null));
      break;
    }
    case 'instance.status':
    case 'instance.health': {
      const i = instanceOf(s, b.instanceId as string);
      if (op.kind === 'instance.health') {
        i.health ??= new Map();
        i.health.set(a, lww(i.health.get(a), ts, h, b));
      } else i.status.set(a, lww(i.status.get(a), ts, h, b));
      // A replica of a release that failed, or went unhealthy before it was ever healthy: evidence
      // against that release (earliest kept; a flap after a pass is checked at render).
      if (typeof b.release === 'number' && b.status === 'healthy') {
        i.healthyAt ??= new Map();
        const k = `${b.release}/${a}`;
        i.healthyAt.set(k, Math.min(ts, i.healthyAt.get(k) ?? ts));
      }
      if (typeof b.release === 'number' && (b.state === 'failed' || b.status === 'unhealthy')) {
        i.failures ??= new Map();
        const k = `${b.release}/${a}/${op.kind === 'instance.health' ? 'unhealthy' : 'failed'}`;
        const cur = i.failures.get(k);
        if (!cur || ts < cur.ts || (ts === cur.ts && (b.reason as string) < cur.reason))
          i.failures.set(k, {
            release: b.release,
            node: a,
            ts,
            reason: (b.reason as string | undefined) ?? String(b.state ?? b.status),
          });
      }
      break;
    }
    case 'instance.commit': {
      const i = instanceOf(s, b.instanceId as string);
      const r = b.revision as number;
      const c = i.commit;
      if (!c || r > c.revision || (r === c.revision && (ts > c.ts || (ts === c.ts && h > c.hash)))) {
        i.commit = { revision: r, ts, hash: h, value: b.hash as string };
      }
      break;
    }
    case 'formnet.allocate': {
      const m = getOrSet(s.allocations, b.address as string, () => new Map());
      m.set(a, first(m.get(a), depth, h, { author: a, body: b }));
      break;
    }
    case 'formnet.peer': {
      const m = getOrSet(s.peers, a, () => new Map());
      for (const k of ['wgPublicKey', 'endpoint', 'allowedIps']) setField(m, k, ts, h, k in b ? b[k] : null);
      setField(m, 'active', ts, h, true);
      break;
    }
    case 'formnet.leave': {
      // Last writer wins against the peer's own formnet.peer ops: leave, then rejoin later.
      setField(
        getOrSet(s.peers, a, () => new Map()),
        'active',
        ts,
        h,
        false,
      );
      break;
    }
    case 'dns.record': {
      const name = b.name as string;
      const d = getOrSet(s.dnsExplicit, name, (): DnsState => ({ byAuthor: new Map() }));
      d.byAuthor.set(a, lww(d.byAuthor.get(a), ts, h, b));
      break;
    }
    case 'dns.claim':
    case 'dns.release': {
      const m = getOrSet(s.domainClaims, b.name as string, () => new Map());
      const v = op.kind === 'dns.claim' ? { instanceId: b.instanceId as string, token: b.token as string } : null;
      m.set(a, lww(m.get(a), ts, h, v));
      break;
    }
    case 'port.claim':
    case 'port.release': {
      const m = getOrSet(s.portClaims, b.port as number, () => new Map());
      const v = op.kind === 'port.claim' ? { instanceId: b.instanceId as string, target: b.target as number } : null;
      m.set(a, lww(m.get(a), ts, h, v));
      break;
    }
    case 'port.granted':
      getOrSet(s.portGrants, b.claim as string, () => new Set()).add(op.author);
      break;
    case 'dns.verified':
    case 'dns.lapsed': {
      const m = getOrSet(s.domainVerified, b.claim as string, () => new Map());
      const v = op.kind === 'dns.verified' ? { method: b.method as string } : { reason: b.reason as string };
      m.set(op.author, lww(m.get(op.author), ts, h, v));
      break;
    }
  }
  return undefined;
}
