import { addressOf as deriveAddress, sha256Hex } from '@formation/identity';
import { DEFAULT_DOMAIN, type GpuDevice, type GpuRequest, type HealthcheckSpec } from '@formation/interface';
import { canonicalJson } from './canonical.ts';
import { actorOf, cidrWithin } from './kinds.ts';
import { getOrSet } from './maps.ts';
import type { Op } from './op.ts';
import { PORT_CLAIMS_PER_ACCOUNT, PORT_QUORUM } from './public-ports.ts';
import { type FailureEvidence, type ReleaseRecord, type ReleaseView, releaseState } from './releases.ts';

/**
 * Views as join-semilattices: each op is folded in with an operation that is commutative, associative
 * and idempotent (max by (ts, hash), min by (depth, hash), set union), so the state after any delivery
 * order of the same op set is the same. `render()` turns that state into the public views; rules that
 * join several entities (owner checks on explicit DNS, replica assignment) run there, over the whole set.
 */

/** Last-writer-wins register: higher (ts, hash) wins. */
interface Lww<T> {
  ts: number;
  hash: string;
  value: T;
}
/** First-wins register: lower (depth, hash) wins. `depth` = 1 + max depth of deps (0 without deps). */
interface First<T> {
  depth: number;
  hash: string;
  value: T;
}

const addresses = new Map<string, string>();
/** addressOf with a cache: rendering views derives many addresses, each a point decompression + keccak. */
function addressOf(publicKey: string): string {
  let a = addresses.get(publicKey);
  if (a === undefined) {
    a = deriveAddress(publicKey);
    if (addresses.size > 100_000) addresses.clear();
    addresses.set(publicKey, a);
  }
  return a;
}

function lww<T>(cur: Lww<T> | undefined, ts: number, hash: string, value: T): Lww<T> {
  return !cur || ts > cur.ts || (ts === cur.ts && hash > cur.hash) ? { ts, hash, value } : cur;
}
function healthOf(h: Lww<Body> | undefined): ReplicaHealthView | null {
  if (!h) return null;
  const v = h.value;
  return {
    status: v.status as ReplicaHealthView['status'],
    release: v.release as number,
    reason: (v.reason as string | undefined) ?? null,
    ts: h.ts,
  };
}
function first<T>(cur: First<T> | undefined, depth: number, hash: string, value: T): First<T> {
  return !cur || depth < cur.depth || (depth === cur.depth && hash < cur.hash) ? { depth, hash, value } : cur;
}
function setField<K, T>(m: Map<K, Lww<T>>, k: K, ts: number, hash: string, v: T): void {
  m.set(k, lww(m.get(k), ts, hash, v));
}

type Body = Record<string, unknown>;
type Resources = { vcpu: number; memMiB: number; diskGiB: number };

interface NodeState {
  registered?: First<null>;
  fields: Map<string, Lww<unknown>>;
  heartbeat?: Lww<Body>;
}
interface InstanceState {
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
interface DnsState {
  byAuthor: Map<string, Lww<Body>>;
}

export interface NodeView {
  id: string;
  /** Always true in this list (unadmitted nodes are left out; see `network.pending`). */
  admitted: boolean;
  address: string;
  name: string | null;
  capacity: Resources;
  /** The GPUs it reports (`node.register`/`node.update` `gpus`; a claim, not a proof). */
  gpus?: GpuDevice[] | undefined;
  endpoint: string;
  p2pPeerId: string;
  wgPublicKey: string;
  /** The node's slice: from its node.admit (admins policy) or registration; '' when it conflicts. */
  formnetRange: string;
  registeredBy: string;
  heartbeat: { ts: number; status: string; used: Resources | null } | null;
}
export interface AccountView {
  publicKey: string;
  address: string;
  name: string | null;
}
export interface FormpackView {
  id: string;
  name: string;
  owner: string;
  sha256s: Record<string, string>;
  size: number;
  publishedBy: string;
  /** The owner's EXPOSE ports and HEALTHCHECK (for the ingress), or null when the publish has none. */
  service: FormpackService | null;
}
export interface FormpackService {
  expose: number[];
  healthcheck?: HealthcheckSpec;
}
/** The owner's publish of the instance's Formpack (Formpacks are keyed by owner and id). */
export interface InstanceFormpack {
  name: string;
  sha256s: Record<string, string>;
  size: number;
  publishedBy: string;
  service: FormpackService | null;
}
export interface ReplicaView {
  node: string;
  claimedBy: string;
  assigned: boolean;
  state: string | null;
  formnetIp: string | null;
  revision: number | null;
  reason: string | null;
  ts: number | null;
  /** The release its VM was booted for (instance.status `release`), or null when not reported. */
  release?: number | null;
  /** The node's latest HEALTHCHECK verdict on this replica (instance.health), or null. */
  health?: ReplicaHealthView | null;
}
export interface ReplicaHealthView {
  status: 'starting' | 'healthy' | 'unhealthy';
  release: number;
  reason: string | null;
  ts: number;
}
export interface InstanceView {
  id: string;
  owner: string;
  ownerAddress: string;
  name: string;
  formpackId: string;
  replicas: number;
  resources: Resources;
  /** The GPUs it needs (Formfile `GPU`), or null. */
  gpu?: GpuRequest | null | undefined;
  /** The owner's wish (instance.update `desired`): `running` unless stopped. */
  desired: 'running' | 'stopped';
  /** Scale to zero (instance.update `autostopMinutes`): minutes without traffic before a replica suspends; 0 = off. */
  autostopMinutes?: number | undefined;
  /** `form manage start`: replicas suspended before this time (ms) wake now, without waiting for a connection; 0 = never asked. */
  wakeAt?: number | undefined;
  createdBy: string;
  deleted: boolean;
  revision: number;
  revisionHash: string | null;
  /** The owner's own publish of `formpackId`, or null (never another owner's publish of that id). */
  formpack: InstanceFormpack | null;
  /** Beyond its owner's quota (by create (ts, hash) order): never placed, no replica is assigned. */
  overQuota: boolean;
  replicaSet: ReplicaView[];
  /** When the latest revision was committed (the owner's clock): revisions belong to the release they were made on. */
  revisionAt?: number | null;
  /** The release the replicas work toward (the latest, or the last good one after a failed update). */
  release?: number;
  /** How many replicas a rolling update may have down at once (instance.update `maxUnavailable`, 1). */
  maxUnavailable?: number;
  /** Every release, oldest first, with how it went (`form manage releases`). */
  releases?: ReleaseView[];
}
export interface FormnetPeerView {
  publicKey: string;
  wgPublicKey: string;
  endpoint: string | null;
  allowedIps: string[];
}
export interface AllocationView {
  address: string;
  peer: string;
  kind: string;
  allocatedBy: string;
  op: string;
}
export interface DnsRecordView {
  name: string;
  source: 'instance' | 'explicit';
  instanceId: string | null;
  addresses: string[];
  owner: string;
}
/**
 * A custom domain claimed for an instance (dns.claim). `verified` once enough admitted nodes vouched
 * for the owner's proof (`DOMAIN_QUORUM`); `contested` when two owners' claims are both verified:
 * then nobody's (deniable, never hijackable).
 */
export interface DomainView {
  name: string;
  instanceId: string;
  owner: string;
  token: string;
  /** Hash of the dns.claim: what a dns.verified must cite. */
  claim: string;
  /**
   * `lapsed`: a quorum of admitted nodes (and more than still vouch) last said the proof is gone
   * (dns.lapsed, after their grace period): not answered, not routed, until they see it again.
   */
  state: 'pending' | 'verified' | 'contested' | 'lapsed';
  /** Admitted nodes whose latest word on this claim is a dns.verified, and how they saw the proof. */
  verifiedBy: Array<{ node: string; method: string }>;
  /** Admitted nodes whose latest word is a dns.lapsed: why, and when they said it. */
  lapsedBy: Array<{ node: string; reason: string; ts: number }>;
}
/**
 * A public TCP port claimed for an instance (port.claim). `active` = granted by a quorum of admitted
 * nodes and the first such claim by (ts, hash): the ingress forwards `port` to `target`. `taken` =
 * granted too but another claim holds the port; `pending` = not granted (yet).
 */
export interface PortView {
  port: number;
  instanceId: string;
  owner: string;
  target: number;
  claim: string;
  /** The claim's ts: with `claim` (its hash), the order in which claims on one port come. */
  ts: number;
  state: 'pending' | 'active' | 'taken';
  grantedBy: string[];
}
/** Distinct admitted nodes that must vouch for a domain: 2, or 1 in a one-node network. */
export const DOMAIN_QUORUM = 2;
/**
 * Live domain claims that count per account (the first by (ts, hash)): every node checks every pending
 * claim through DNS, so claims must not be free to multiply.
 */
export const DOMAIN_CLAIMS_PER_ACCOUNT = 16;
export type AdmissionPolicy = 'legacy-open' | 'admins' | 'open';
export interface Quotas {
  instancesPerAccount: number;
  replicasPerAccount: number;
}
/** Default per-account quotas when the network.init names none (or there is no genesis). */
export const DEFAULT_QUOTAS: Quotas = { instancesPerAccount: 32, replicasPerAccount: 64 };
export interface NetworkView {
  /** Hash of the network.init this state follows; null = no genesis (`legacy-open`). */
  genesis: string | null;
  name: string | null;
  policy: AdmissionPolicy;
  admins: string[];
  quotas: Quotas;
  /** Registered nodes not admitted (admins policy): they place, claim, report and route nothing. */
  pending: string[];
}
/** Something two parties hold at once that only one may: each loses it, deterministically. */
export interface ConflictView {
  kind: 'formnetRange' | 'wgPublicKey' | 'name' | 'dns' | 'address' | 'domain';
  key: string;
  parties: string[];
}
export interface Views {
  network: NetworkView;
  conflicts: ConflictView[];
  nodes: NodeView[];
  accounts: AccountView[];
  formpacks: FormpackView[];
  instances: InstanceView[];
  formnetPeers: FormnetPeerView[];
  allocations: AllocationView[];
  dns: DnsRecordView[];
  domains: DomainView[];
  ports: PortView[];
}

const byKey =
  <T>(key: (t: T) => string) =>
  (a: T, b: T) =>
    key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
const rankLess = (a: { depth: number; hash: string }, b: { depth: number; hash: string }) =>
  a.depth < b.depth || (a.depth === b.depth && a.hash < b.hash);

/** ViewState fields that hold folded state (copied by `clone`). */
const FOLD_FIELDS = [
  'nodes',
  'accounts',
  'authors',
  'formpacks',
  'instances',
  'peers',
  'allocations',
  'dnsExplicit',
  'domainClaims',
  'domainVerified',
  'portClaims',
  'portGrants',
  'inits',
  'admission',
  'revocations',
  'delegatedTs',
] as const;

export class ViewState {
  readonly domain: string;
  private nodes = new Map<string, NodeState>();
  private accounts = new Map<string, Map<string, Lww<unknown>>>();
  private authors = new Set<string>();
  /** Keyed by `${owner address}/${id}`: each owner's publish is its own. */
  private formpacks = new Map<string, First<{ author: string; body: Body }>>();
  private instances = new Map<string, InstanceState>();
  private peers = new Map<string, Map<string, Lww<unknown>>>();
  /** address -> allocating node -> its first allocation of that address. */
  private allocations = new Map<string, Map<string, First<{ author: string; body: Body }>>>();
  private dnsExplicit = new Map<string, DnsState>();
  /** domain -> claiming account -> its latest dns.claim (with the op hash) or dns.release (null). */
  private domainClaims = new Map<string, Map<string, Lww<{ instanceId: string; token: string } | null>>>();
  /** dns.claim hash -> node -> its latest dns.verified (method) or dns.lapsed (reason). */
  private domainVerified = new Map<string, Map<string, Lww<{ method: string } | { reason: string }>>>();
  /** port -> claiming account -> its latest port.claim or port.release (null). */
  private portClaims = new Map<number, Map<string, Lww<{ instanceId: string; target: number } | null>>>();
  /** port.claim hash -> granting nodes. */
  private portGrants = new Map<string, Set<string>>();
  /** network.init bodies by hash (only the genesis counts). */
  private inits = new Map<string, Body>();
  /** node -> LWW of admit (with range) / remove. */
  private admission = new Map<string, Lww<{ admitted: boolean; formnetRange: string | null }>>();
  /** `${owner}/${delegate}` -> earliest revocation ts. */
  private revocations = new Map<string, number>();
  /** `${owner}/${delegate}` -> latest ts of a delegated op folded in. */
  private delegatedTs = new Map<string, number>();
  private genesisHash: string | undefined;
  private cache: { views: Views; digest: string } | undefined;

  constructor(domain: string = DEFAULT_DOMAIN, genesis?: string) {
    this.domain = domain;
    this.genesisHash = genesis;
  }

  /** A deep copy (the fold state is plain Maps, Sets and records). */
  clone(): ViewState {
    const v = new ViewState(this.domain, this.genesisHash);
    const from = this as unknown as Record<string, unknown>;
    const to = v as unknown as Record<string, unknown>;
    for (const k of FOLD_FIELDS) to[k] = structuredClone(from[k]);
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
    for (const n of this.nodes.values()) if (n.registered) return true;
    return false;
  }

  /** Earliest revocation ts of `owner`'s delegations to `delegate`, if any. */
  revokedAt(owner: string, delegate: string): number | undefined {
    return this.revocations.get(`${owner}/${delegate}`);
  }

  /**
   * Fold one accepted op in. Idempotent and order-independent. Returns 'rebuild' when a revocation
   * un-counts delegated ops already folded in: the caller must fold all ops again (revocations first).
   */
  apply(op: Op, depth: number): 'rebuild' | undefined {
    this.cache = undefined;
    const { hash: h, ts, body: b } = op;
    if (b.onBehalfOf !== undefined) {
      const k = `${actorOf(op)}/${op.author}`;
      const rev = this.revocations.get(k);
      if (rev !== undefined && ts > rev) return undefined; // revoked before: never counts
      this.delegatedTs.set(k, Math.max(ts, this.delegatedTs.get(k) ?? ts));
    }
    // The account the op acts for: a dashboard session's ops count as its delegating developer's.
    const a = actorOf(op);
    this.authors.add(a);
    switch (op.kind) {
      case 'network.init':
        this.inits.set(h, b);
        break;
      case 'node.admit':
      case 'node.remove': {
        const node = b.node as string;
        const value = { admitted: op.kind === 'node.admit', formnetRange: (b.formnetRange as string) ?? null };
        this.admission.set(node, lww(this.admission.get(node), ts, h, value));
        break;
      }
      case 'delegation.revoke': {
        const k = `${a}/${b.delegate as string}`;
        const cur = this.revocations.get(k);
        if (cur === undefined || ts < cur) {
          this.revocations.set(k, ts);
          if ((this.delegatedTs.get(k) ?? -1) > ts) return 'rebuild';
        }
        break;
      }
      case 'node.register':
      case 'node.update': {
        const n = this.node(a);
        if (op.kind === 'node.register') n.registered = first(n.registered, depth, h, null);
        for (const [k, v] of Object.entries(b)) setField(n.fields, k, ts, h, v);
        break;
      }
      case 'node.heartbeat': {
        const n = this.node(a);
        n.heartbeat = lww(n.heartbeat, ts, h, b);
        break;
      }
      case 'account.update': {
        const m = getOrSet(this.accounts, a, () => new Map());
        for (const [k, v] of Object.entries(b)) setField(m, k, ts, h, v);
        break;
      }
      case 'formpack.publish': {
        const k = `${b.owner as string}/${b.id as string}`;
        this.formpacks.set(k, first(this.formpacks.get(k), depth, h, { author: a, body: b }));
        break;
      }
      case 'instance.create': {
        const i = this.instance(b.id as string);
        i.create = first(i.create, depth, h, { author: a, body: b, ts });
        break;
      }
      case 'instance.update': {
        const i = this.instance(b.instanceId as string);
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
        const i = this.instance(b.instanceId as string);
        i.deleted = first(i.deleted, depth, h, null);
        break;
      }
      case 'instance.claim': {
        const i = this.instance(b.instanceId as string);
        i.claims.set(a, first(i.claims.get(a), depth, h, null));
        break;
      }
      case 'instance.status':
      case 'instance.health': {
        const i = this.instance(b.instanceId as string);
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
        const i = this.instance(b.instanceId as string);
        const r = b.revision as number;
        const c = i.commit;
        if (!c || r > c.revision || (r === c.revision && (ts > c.ts || (ts === c.ts && h > c.hash)))) {
          i.commit = { revision: r, ts, hash: h, value: b.hash as string };
        }
        break;
      }
      case 'formnet.allocate': {
        const m = getOrSet(this.allocations, b.address as string, () => new Map());
        m.set(a, first(m.get(a), depth, h, { author: a, body: b }));
        break;
      }
      case 'formnet.peer': {
        const m = getOrSet(this.peers, a, () => new Map());
        for (const k of ['wgPublicKey', 'endpoint', 'allowedIps']) setField(m, k, ts, h, k in b ? b[k] : null);
        setField(m, 'active', ts, h, true);
        break;
      }
      case 'formnet.leave': {
        // Last writer wins against the peer's own formnet.peer ops: leave, then rejoin later.
        setField(
          getOrSet(this.peers, a, () => new Map()),
          'active',
          ts,
          h,
          false,
        );
        break;
      }
      case 'dns.record': {
        const name = b.name as string;
        const d = getOrSet(this.dnsExplicit, name, (): DnsState => ({ byAuthor: new Map() }));
        d.byAuthor.set(a, lww(d.byAuthor.get(a), ts, h, b));
        break;
      }
      case 'dns.claim':
      case 'dns.release': {
        const m = getOrSet(this.domainClaims, b.name as string, () => new Map());
        const v = op.kind === 'dns.claim' ? { instanceId: b.instanceId as string, token: b.token as string } : null;
        m.set(a, lww(m.get(a), ts, h, v));
        break;
      }
      case 'port.claim':
      case 'port.release': {
        const m = getOrSet(this.portClaims, b.port as number, () => new Map());
        const v = op.kind === 'port.claim' ? { instanceId: b.instanceId as string, target: b.target as number } : null;
        m.set(a, lww(m.get(a), ts, h, v));
        break;
      }
      case 'port.granted':
        getOrSet(this.portGrants, b.claim as string, () => new Set()).add(op.author);
        break;
      case 'dns.verified':
      case 'dns.lapsed': {
        const m = getOrSet(this.domainVerified, b.claim as string, () => new Map());
        const v = op.kind === 'dns.verified' ? { method: b.method as string } : { reason: b.reason as string };
        m.set(op.author, lww(m.get(op.author), ts, h, v));
        break;
      }
    }
    return undefined;
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
    const c = this.instances.get(id)?.create;
    return c ? { hash: c.hash, author: c.value.author } : undefined;
  }

  /** Hash of `node`'s claim on an instance, if any. */
  claimOf(instanceId: string, node: string): string | undefined {
    return this.instances.get(instanceId)?.claims.get(node)?.hash;
  }

  /**
   * The latest node.admit / node.remove about `node`, if any (registered or not): whether it is
   * admitted and the slice its admin gave it. A joining node waits on this before it boots anything.
   */
  admissionOf(node: string): { admitted: boolean; formnetRange: string | null } | undefined {
    return this.admission.get(node)?.value;
  }

  /** Hash of `node`'s node.register, if any. */
  registrationOf(node: string): string | undefined {
    return this.nodes.get(node)?.registered?.hash;
  }

  private node(id: string): NodeState {
    const n = getOrSet(this.nodes, id, (): NodeState => ({ fields: new Map() }));
    return n;
  }

  private instance(id: string): InstanceState {
    const i = getOrSet(
      this.instances,
      id,
      (): InstanceState => ({ fields: new Map(), claims: new Map(), status: new Map() }),
    );
    return i;
  }

  private rendered(): { views: Views; digest: string } {
    if (this.cache) return this.cache;
    const views = this.render();
    this.cache = { views, digest: sha256Hex(canonicalJson(views)) };
    return this.cache;
  }

  private render(): Views {
    const f = <T>(m: Map<string, Lww<unknown>>, k: string, dflt: T): T => (m.has(k) ? (m.get(k)!.value as T) : dflt);
    const conflicts: ConflictView[] = [];
    const conflict = (kind: ConflictView['kind'], key: string, parties: Iterable<string>) =>
      conflicts.push({ kind, key, parties: [...new Set(parties)].sort() });

    // The network: only the genesis this store follows counts (never decided by rank).
    const g = this.genesisHash;
    const init = g ? this.inits.get(g) : undefined;
    const policy: AdmissionPolicy = !g ? 'legacy-open' : init?.admission === 'open' ? 'open' : 'admins';
    const quotas: Quotas = { ...DEFAULT_QUOTAS, ...((init?.quotas as Quotas | undefined) ?? {}) };

    // Nodes: admitted ones only. In `admins`, admitted = the latest of node.admit / node.remove is an
    // admit, and the slice is the admit's; otherwise any registered node, with its registered slice.
    const candidates: Array<{ id: string; n: NodeState; range: string }> = [];
    const pending: string[] = [];
    for (const [id, n] of this.nodes) {
      if (!n.registered) continue;
      if (policy === 'admins') {
        const adm = this.admission.get(id)?.value;
        if (!adm?.admitted) {
          pending.push(id);
          continue;
        }
        candidates.push({ id, n, range: adm.formnetRange ?? '' });
      } else {
        candidates.push({ id, n, range: f(n.fields, 'formnetRange', '') });
      }
    }
    pending.sort();
    const admitted = new Set(candidates.map((c) => c.id));
    // Two admitted nodes with the same (or an overlapping) slice: both lose routing. Slices are aligned
    // /24s, so overlapping = equal. Same for a WireGuard key held by two nodes.
    const holders = <T>(items: T[], key: (t: T) => string) => {
      const m = new Map<string, string[]>();
      for (const it of items) {
        const k = key(it);
        if (k) getOrSet(m, k, () => []).push((it as { id: string }).id);
      }
      return m;
    };
    const lostRange = new Set<string>();
    for (const [range, ids] of holders(candidates, (c) => c.range)) {
      if (ids.length > 1) {
        conflict('formnetRange', range, ids);
        for (const id of ids) lostRange.add(id);
      }
    }
    const nodeWg = new Map<string, string>(); // wg key -> node id (unique ones)
    const lostWg = new Set<string>();
    for (const [wg, ids] of holders(candidates, (c) => f(c.n.fields, 'wgPublicKey', ''))) {
      if (ids.length > 1) {
        conflict('wgPublicKey', wg, ids);
        for (const id of ids) lostWg.add(id);
      } else nodeWg.set(wg, ids[0] as string);
    }
    const rangeOf = new Map<string, string>();
    const nodes: NodeView[] = [];
    for (const { id, n, range } of candidates) {
      const hb = n.heartbeat;
      const formnetRange = lostRange.has(id) ? '' : range;
      if (formnetRange) rangeOf.set(id, formnetRange);
      nodes.push({
        id,
        admitted: true,
        address: addressOf(id),
        name: f(n.fields, 'name', null),
        capacity: f(n.fields, 'capacity', { vcpu: 0, memMiB: 0, diskGiB: 0 }),
        gpus: f(n.fields, 'gpus', [] as GpuDevice[]),
        endpoint: f(n.fields, 'endpoint', ''),
        p2pPeerId: f(n.fields, 'p2pPeerId', ''),
        wgPublicKey: lostWg.has(id) ? '' : f(n.fields, 'wgPublicKey', ''),
        formnetRange,
        registeredBy: n.registered!.hash,
        heartbeat: hb
          ? { ts: hb.ts, status: hb.value.status as string, used: (hb.value.used as Resources | undefined) ?? null }
          : null,
      });
    }
    nodes.sort(byKey((n) => n.id));
    // Keys that registered as nodes but are not admitted: none of their node-kind ops count.
    const unadmittedNodes = new Set(pending);

    const accounts: AccountView[] = [...this.authors].sort().map((pk) => ({
      publicKey: pk,
      address: addressOf(pk),
      name: f(this.accounts.get(pk) ?? new Map(), 'name', null),
    }));

    const formpacks: FormpackView[] = [...this.formpacks.values()]
      .map((p) => ({
        id: p.value.body.id as string,
        name: p.value.body.name as string,
        owner: p.value.body.owner as string,
        sha256s: p.value.body.sha256s as Record<string, string>,
        size: p.value.body.size as number,
        publishedBy: p.hash,
        service: (p.value.body.service as FormpackService | undefined) ?? null,
      }))
      .sort(byKey((p) => `${p.id}/${p.owner}`));
    const packOf = new Map(formpacks.map((p) => [`${p.owner}/${p.id}`, p]));

    // Quotas: each account's live instances in (create ts, hash) order; one counts while the account
    // is within both its instance and its replica quota, else it is `overQuota` (and never placed).
    const overQuota = new Set<string>();
    const byOwner = new Map<string, Array<{ id: string; ts: number; hash: string; replicas: number }>>();
    for (const [id, i] of this.instances) {
      if (!i.create || i.deleted) continue;
      const c = i.create.value;
      getOrSet(byOwner, c.author, () => []).push({
        id,
        ts: c.ts,
        hash: i.create.hash,
        replicas: f(i.fields, 'replicas', c.body.replicas as number),
      });
    }
    for (const list of byOwner.values()) {
      list.sort((x, y) => x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0));
      let count = 0;
      let replicas = 0;
      for (const x of list) {
        if (count + 1 > quotas.instancesPerAccount || replicas + x.replicas > quotas.replicasPerAccount) {
          overQuota.add(x.id);
          continue;
        }
        count++;
        replicas += x.replicas;
      }
    }

    const instances: InstanceView[] = [];
    for (const [id, i] of this.instances) {
      if (!i.create) continue;
      const c = i.create.value;
      const replicas = f(i.fields, 'replicas', c.body.replicas as number);
      const over = overQuota.has(id);
      // Claims and reports count only from admitted nodes.
      const claims = [...i.claims.entries()]
        .filter(([node]) => admitted.has(node))
        .map(([node, cl]) => ({ node, ...cl }))
        .sort((x, y) => (rankLess(x, y) ? -1 : rankLess(y, x) ? 1 : 0));
      const replicaSet: ReplicaView[] = claims.map((cl, idx) => {
        const s = i.status.get(cl.node);
        // A node reports addresses in its own slice only (else DNS could point at someone else's).
        const ip = s?.value.formnetIp as string | undefined;
        const range = rangeOf.get(cl.node);
        return {
          node: cl.node,
          claimedBy: cl.hash,
          assigned: !over && idx < replicas,
          state: (s?.value.state as string | undefined) ?? null,
          formnetIp: ip !== undefined && range !== undefined && cidrWithin(ip, range) ? ip : null,
          revision: (s?.value.revision as number | undefined) ?? null,
          reason: (s?.value.reason as string | undefined) ?? null,
          ts: s?.ts ?? null,
          release: (s?.value.release as number | undefined) ?? null,
          health: healthOf(i.health?.get(cl.node)),
        };
      });
      // Releases (releases.ts): release 1 is the create; the target is the latest unless its roll-out failed.
      const createResources = c.body.resources as Resources;
      const recs: ReleaseRecord[] = [
        {
          release: 1,
          formpackId: c.body.formpackId as string,
          resources: createResources,
          ts: c.ts,
          actor: c.author,
          op: i.create.hash,
          rollbackOf: null,
        },
        ...[...(i.releases?.values() ?? [])].map((r) => ({
          ...r.value,
          resources: r.value.resources.vcpu === 0 ? createResources : r.value.resources,
        })),
      ];
      const rel = releaseState({
        releases: recs,
        latest: f(i.fields, 'release', 1),
        evidence: [...(i.failures?.entries() ?? [])]
          .filter(([k, e]) => {
            if (!k.endsWith('/unhealthy')) return true;
            const ok = i.healthyAt?.get(`${e.release}/${e.node}`);
            return ok === undefined || e.ts < ok;
          })
          .map(([, e]) => e),
        counted: new Set(replicaSet.map((r) => r.node)),
        replicas: replicaSet
          .filter((r) => r.assigned)
          .map((r) => ({ node: r.node, state: r.state, release: r.release ?? null })),
      });
      const targetRec =
        rel.target === f(i.fields, 'release', 1) ? undefined : recs.find((r) => r.release === rel.target);
      const formpackId = targetRec?.formpackId ?? f(i.fields, 'formpackId', c.body.formpackId as string);
      const pack = packOf.get(`${addressOf(c.author)}/${formpackId}`);
      instances.push({
        id,
        owner: c.author,
        ownerAddress: addressOf(c.author),
        name: c.body.name as string,
        formpackId,
        replicas,
        resources: targetRec?.resources ?? f(i.fields, 'resources', c.body.resources as Resources),
        gpu: f(i.fields, 'gpu', (c.body.gpu as GpuRequest | undefined) ?? null),
        desired: f(i.fields, 'desired', 'running' as 'running' | 'stopped'),
        autostopMinutes: f(i.fields, 'autostopMinutes', 0),
        wakeAt: f(i.fields, 'wakeAt', 0),
        createdBy: i.create.hash,
        deleted: i.deleted !== undefined,
        revision: i.commit?.revision ?? 0,
        revisionHash: i.commit?.value ?? null,
        revisionAt: i.commit?.ts ?? null,
        formpack: pack
          ? {
              name: pack.name,
              sha256s: pack.sha256s,
              size: pack.size,
              publishedBy: pack.publishedBy,
              service: pack.service,
            }
          : null,
        overQuota: over,
        replicaSet,
        release: rel.target,
        maxUnavailable: f(i.fields, 'maxUnavailable', 1),
        releases: rel.releases,
      });
    }
    instances.sort(byKey((i) => i.id));

    // Allocations: only admitted nodes allocate; an instance address must lie in the allocating node's
    // own slice (so only the slice's holder can allocate there). Candidates for one address by one
    // node, or naming one peer: the first (depth, hash). Several nodes naming different peers (only
    // possible in the member pool): contested, nobody gets it.
    const allocations: AllocationView[] = [];
    for (const [address, byNode] of this.allocations) {
      const valid = [...byNode.values()].filter((x) => {
        if (!admitted.has(x.value.author)) return false;
        if (x.value.body.kind !== 'instance') return true;
        const r = rangeOf.get(x.value.author);
        return r !== undefined && cidrWithin(address, r);
      });
      if (valid.length === 0) continue;
      const peers = new Set(valid.map((x) => x.value.body.peer as string));
      if (peers.size > 1) {
        conflict('address', address, peers);
        continue;
      }
      const w = valid.reduce((best, x) => (rankLess(x, best) ? x : best));
      allocations.push({
        address,
        peer: w.value.body.peer as string,
        kind: w.value.body.kind as string,
        allocatedBy: w.value.author,
        op: w.hash,
      });
    }
    allocations.sort(byKey((x) => x.address));

    // Formnet peers: not unadmitted nodes; allowedIps only what the peer holds (its allocations, its
    // slice); a WireGuard key used by two keys (or by a peer and another node) is nobody's.
    const held = new Map<string, string[]>();
    for (const x of allocations) if (x.kind !== 'instance') getOrSet(held, x.peer, () => []).push(`${x.address}/32`);
    for (const [id, r] of rangeOf) getOrSet(held, id, () => []).push(r);
    const activePeers = [...this.peers.entries()].filter(
      ([pk, m]) => !unadmittedNodes.has(pk) && f(m, 'active', false) && f(m, 'wgPublicKey', '') !== '',
    );
    const wgUsers = new Map<string, Set<string>>();
    for (const [pk, m] of activePeers) getOrSet(wgUsers, f(m, 'wgPublicKey', ''), () => new Set()).add(pk);
    for (const [wg, node] of nodeWg) getOrSet(wgUsers, wg, () => new Set()).add(node);
    const formnetPeers: FormnetPeerView[] = [];
    for (const [pk, m] of activePeers) {
      const wg = f(m, 'wgPublicKey', '');
      const users = wgUsers.get(wg) as Set<string>;
      // An admitted node's registered key is the node's; otherwise a key shared by two is nobody's.
      const holder = nodeWg.get(wg);
      if (holder !== undefined ? holder !== pk : users.size > 1 || lostWg.has(pk)) continue;
      const mine = held.get(pk) ?? [];
      formnetPeers.push({
        publicKey: pk,
        wgPublicKey: wg,
        endpoint: f<string | null>(m, 'endpoint', null),
        allowedIps: f<string[]>(m, 'allowedIps', []).filter((ip) => mine.some((h) => cidrWithin(ip, h))),
      });
    }
    for (const [wg, users] of wgUsers)
      if (wg && users.size > 1 && !nodeWgConflict(conflicts, wg)) conflict('wgPublicKey', wg, users);
    formnetPeers.sort(byKey((p) => p.publicKey));

    // DNS. Every live instance gets <id>.<domain> and <name>.<owner address>.<domain> (the owner's
    // first instance of that name by (depth, hash): only the owner can make those). <name>.<domain>
    // resolves only while a single owner has live instances of that name; when two owners do, it is
    // withheld (contested: deniable, never hijackable) and listed in `conflicts`.
    const dns = new Map<string, DnsRecordView>();
    const live = instances.filter((i) => !i.deleted);
    // Addresses of running replicas, at most `replicas` of them: the first claims first, then the
    // claims that stand in for them (a healed replica on another node is reachable by name too).
    const ipsOf = (i: InstanceView) =>
      [
        ...new Set(
          i.replicaSet
            // A suspended replica keeps its name: the next connection to it wakes it (scale to zero).
            .filter((r) => (r.state === 'running' || r.state === 'suspended') && r.formnetIp)
            .sort((a, b) => Number(b.assigned) - Number(a.assigned))
            .slice(0, i.replicas)
            .map((r) => r.formnetIp as string),
        ),
      ].sort();
    const rankOf = (i: InstanceView) => ({ depth: this.instances.get(i.id)!.create!.depth, hash: i.createdBy });
    const byOwnerName = new Map<string, InstanceView>();
    const ownersOfName = new Map<string, Set<string>>();
    for (const i of live) {
      const k = `${i.name}.${i.ownerAddress.slice(2)}`;
      const cur = byOwnerName.get(k);
      if (!cur || rankLess(rankOf(i), rankOf(cur))) byOwnerName.set(k, i);
      getOrSet(ownersOfName, i.name, () => new Set()).add(i.owner);
    }
    const record = (name: string, i: InstanceView) =>
      dns.set(name, { name, source: 'instance', instanceId: i.id, addresses: ipsOf(i), owner: i.owner });
    for (const i of live) record(`${i.id}.${this.domain}`, i);
    for (const [k, i] of byOwnerName) {
      record(`${k}.${this.domain}`, i);
      const owners = ownersOfName.get(i.name) as Set<string>;
      if (owners.size === 1) record(`${i.name}.${this.domain}`, i);
    }
    for (const [name, owners] of ownersOfName) if (owners.size > 1) conflict('name', name, owners);
    // Explicit records: never under the derived domain; a name claimed by two keys is nobody's.
    const instById = new Map(instances.map((i) => [i.id, i]));
    for (const [name, d] of this.dnsExplicit) {
      if (dns.has(name) || name === this.domain || name.endsWith(`.${this.domain}`)) continue;
      if (d.byAuthor.size > 1) {
        conflict('dns', name, d.byAuthor.keys());
        continue;
      }
      const [[owner, lw]] = [...d.byAuthor.entries()] as [[string, Lww<Body>]];
      const rec = lw.value;
      if ('instanceId' in rec) {
        const i = instById.get(rec.instanceId as string);
        if (!i || i.deleted) continue;
        dns.set(name, { name, source: 'explicit', instanceId: i.id, addresses: ipsOf(i), owner });
      } else {
        dns.set(name, {
          name,
          source: 'explicit',
          instanceId: null,
          addresses: [...(rec.addresses as string[])].sort(),
          owner,
        });
      }
    }
    const dnsList = [...dns.values()].sort(byKey((d) => d.name));

    // Custom domains: a live claim (not released, its instance live and the claimer's) outside the
    // network's domain and not an explicit record of another owner; verified by DOMAIN_QUORUM
    // distinct admitted nodes (1 when only one is admitted); two owners verified = contested.
    const quorum = Math.max(1, Math.min(DOMAIN_QUORUM, nodes.length));
    type Live = { name: string; owner: string; ts: number; hash: string; instanceId: string; token: string };
    const liveByOwner = new Map<string, Live[]>();
    for (const [name, byActor] of this.domainClaims) {
      if (name === this.domain || name.endsWith(`.${this.domain}`)) continue;
      const held = dns.get(name);
      for (const [owner, lw] of byActor) {
        const c = lw.value;
        const i = c ? instById.get(c.instanceId) : undefined;
        if (!c || !i || i.deleted || i.owner !== owner || (held && held.owner !== owner)) continue;
        getOrSet(liveByOwner, owner, () => []).push({ name, owner, ts: lw.ts, hash: lw.hash, ...c });
      }
    }
    const byName = new Map<string, DomainView[]>();
    for (const list of liveByOwner.values()) {
      list.sort((x, y) => x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0));
      for (const x of list.slice(0, DOMAIN_CLAIMS_PER_ACCOUNT)) {
        const said = [...(this.domainVerified.get(x.hash) ?? new Map()).entries()]
          .filter(([node]) => admitted.has(node))
          .sort(byKey(([node]) => node));
        const verifiedBy = said.flatMap(([node, v]) => ('method' in v.value ? [{ node, method: v.value.method }] : []));
        const lapsedBy = said.flatMap(([node, v]) =>
          'reason' in v.value ? [{ node, reason: v.value.reason, ts: v.ts }] : [],
        );
        // Lapsed takes the same quorum as verified, and more nodes saying "gone" than "still there":
        // two nodes cannot take down a domain that the rest still see.
        const state: DomainView['state'] =
          lapsedBy.length >= quorum && lapsedBy.length > verifiedBy.length
            ? 'lapsed'
            : verifiedBy.length >= quorum
              ? 'verified'
              : 'pending';
        getOrSet(byName, x.name, () => []).push({
          name: x.name,
          instanceId: x.instanceId,
          owner: x.owner,
          token: x.token,
          claim: x.hash,
          state,
          verifiedBy,
          lapsedBy,
        });
      }
    }
    const domains: DomainView[] = [];
    for (const [name, list] of byName) {
      const winners = list.filter((d) => d.state === 'verified');
      if (winners.length > 1) {
        for (const d of winners) d.state = 'contested';
        conflict(
          'domain',
          name,
          winners.map((d) => d.owner),
        );
      }
      domains.push(...list);
    }
    domains.sort(byKey((d) => `${d.name}/${d.owner}`));
    const ports = this.renderPorts(instById, admitted, Math.max(1, Math.min(PORT_QUORUM, nodes.length)));
    conflicts.sort(byKey((c) => `${c.kind}/${c.key}`));

    const network: NetworkView = {
      genesis: g ?? null,
      name: (init?.name as string | undefined) ?? null,
      policy,
      admins: [...((init?.admins as string[] | undefined) ?? [])].sort(),
      quotas,
      pending,
    };
    return {
      network,
      conflicts,
      nodes,
      accounts,
      formpacks,
      instances,
      formnetPeers,
      allocations,
      dns: dnsList,
      domains,
      ports,
    };
  }

  /**
   * Port claims: each account's live claims (not released, its instance live and its own), the first
   * PORT_CLAIMS_PER_ACCOUNT by (ts, hash); granted = `quorum` distinct admitted nodes granted it; per
   * port the first granted claim by (ts, hash) is `active`. Honest nodes grant a port only while no
   * other claim holds it, so a claim backdated to jump ahead of a held port gets no grants.
   */
  private renderPorts(instById: Map<string, InstanceView>, admitted: Set<string>, quorum: number): PortView[] {
    type Live = { port: number; owner: string; ts: number; hash: string; instanceId: string; target: number };
    const byOwner = new Map<string, Live[]>();
    for (const [port, byActor] of this.portClaims) {
      for (const [owner, lw] of byActor) {
        const c = lw.value;
        const i = c ? instById.get(c.instanceId) : undefined;
        if (!c || !i || i.deleted || i.owner !== owner) continue;
        getOrSet(byOwner, owner, () => []).push({ port, owner, ts: lw.ts, hash: lw.hash, ...c });
      }
    }
    const order = (x: { ts: number; hash: string }, y: { ts: number; hash: string }) =>
      x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0);
    const counted: Array<Live & { grantedBy: string[] }> = [];
    for (const list of byOwner.values()) {
      list.sort(order);
      for (const x of list.slice(0, PORT_CLAIMS_PER_ACCOUNT)) {
        const grantedBy = [...(this.portGrants.get(x.hash) ?? [])].filter((n) => admitted.has(n)).sort();
        counted.push({ ...x, grantedBy });
      }
    }
    counted.sort(order);
    const holder = new Map<number, string>();
    for (const x of counted) if (x.grantedBy.length >= quorum && !holder.has(x.port)) holder.set(x.port, x.hash);
    return counted
      .map(
        (x): PortView => ({
          port: x.port,
          instanceId: x.instanceId,
          owner: x.owner,
          target: x.target,
          claim: x.hash,
          ts: x.ts,
          state: holder.get(x.port) === x.hash ? 'active' : x.grantedBy.length >= quorum ? 'taken' : 'pending',
          grantedBy: x.grantedBy,
        }),
      )
      .sort(byKey((p) => `${String(p.port).padStart(5, '0')}/${p.owner}`));
  }
}

function nodeWgConflict(conflicts: ConflictView[], wg: string): boolean {
  return conflicts.some((c) => c.kind === 'wgPublicKey' && c.key === wg);
}
