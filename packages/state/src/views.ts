import { addressOf as deriveAddress, sha256Hex } from '@formation/identity';
import { DEFAULT_DOMAIN } from '@formation/interface';
import { canonicalJson } from './canonical.ts';
import { actorOf } from './kinds.ts';
import type { Op } from './op.ts';

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
}
interface DnsState {
  claim?: First<string>;
  byAuthor: Map<string, Lww<Body>>;
}

export interface NodeView {
  id: string;
  address: string;
  name: string | null;
  capacity: Resources;
  endpoint: string;
  p2pPeerId: string;
  wgPublicKey: string;
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
}
export interface InstanceView {
  id: string;
  owner: string;
  ownerAddress: string;
  name: string;
  formpackId: string;
  replicas: number;
  resources: Resources;
  /** The owner's wish (instance.update `desired`): `running` unless stopped. */
  desired: 'running' | 'stopped';
  createdBy: string;
  deleted: boolean;
  revision: number;
  revisionHash: string | null;
  replicaSet: ReplicaView[];
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
export interface Views {
  nodes: NodeView[];
  accounts: AccountView[];
  formpacks: FormpackView[];
  instances: InstanceView[];
  formnetPeers: FormnetPeerView[];
  allocations: AllocationView[];
  dns: DnsRecordView[];
}

const byKey =
  <T>(key: (t: T) => string) =>
  (a: T, b: T) =>
    key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
const rankLess = (a: { depth: number; hash: string }, b: { depth: number; hash: string }) =>
  a.depth < b.depth || (a.depth === b.depth && a.hash < b.hash);

export class ViewState {
  readonly domain: string;
  private nodes = new Map<string, NodeState>();
  private accounts = new Map<string, Map<string, Lww<unknown>>>();
  private authors = new Set<string>();
  private formpacks = new Map<string, First<{ author: string; body: Body }>>();
  private instances = new Map<string, InstanceState>();
  private peers = new Map<string, Map<string, Lww<unknown>>>();
  private allocations = new Map<string, First<{ author: string; body: Body }>>();
  private dnsExplicit = new Map<string, DnsState>();
  private cache: { views: Views; digest: string } | undefined;

  constructor(domain: string = DEFAULT_DOMAIN) {
    this.domain = domain;
  }

  /** Fold one accepted op in. Idempotent and order-independent. */
  apply(op: Op, depth: number): void {
    this.cache = undefined;
    const { hash: h, ts, body: b } = op;
    // The account the op acts for: a dashboard session's ops count as its delegating developer's.
    const a = actorOf(op);
    this.authors.add(a);
    switch (op.kind) {
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
      case 'formpack.publish':
        this.formpacks.set(b.id as string, first(this.formpacks.get(b.id as string), depth, h, { author: a, body: b }));
        break;
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
      case 'instance.status': {
        const i = this.instance(b.instanceId as string);
        i.status.set(a, lww(i.status.get(a), ts, h, b));
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
      case 'formnet.allocate':
        this.allocations.set(
          b.address as string,
          first(this.allocations.get(b.address as string), depth, h, { author: a, body: b }),
        );
        break;
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
        d.claim = first(d.claim, depth, h, a);
        d.byAuthor.set(a, lww(d.byAuthor.get(a), ts, h, b));
        break;
      }
    }
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
    const nodes: NodeView[] = [];
    for (const [id, n] of this.nodes) {
      if (!n.registered) continue;
      const hb = n.heartbeat;
      nodes.push({
        id,
        address: addressOf(id),
        name: f(n.fields, 'name', null),
        capacity: f(n.fields, 'capacity', { vcpu: 0, memMiB: 0, diskGiB: 0 }),
        endpoint: f(n.fields, 'endpoint', ''),
        p2pPeerId: f(n.fields, 'p2pPeerId', ''),
        wgPublicKey: f(n.fields, 'wgPublicKey', ''),
        formnetRange: f(n.fields, 'formnetRange', ''),
        registeredBy: n.registered.hash,
        heartbeat: hb
          ? { ts: hb.ts, status: hb.value.status as string, used: (hb.value.used as Resources | undefined) ?? null }
          : null,
      });
    }
    nodes.sort(byKey((n) => n.id));

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
      }))
      .sort(byKey((p) => p.id));

    const instances: InstanceView[] = [];
    for (const [id, i] of this.instances) {
      if (!i.create) continue;
      const c = i.create.value;
      const replicas = f(i.fields, 'replicas', c.body.replicas as number);
      const claims = [...i.claims.entries()]
        .map(([node, cl]) => ({ node, ...cl }))
        .sort((x, y) => (rankLess(x, y) ? -1 : rankLess(y, x) ? 1 : 0));
      const replicaSet: ReplicaView[] = claims.map((cl, idx) => {
        const s = i.status.get(cl.node);
        return {
          node: cl.node,
          claimedBy: cl.hash,
          assigned: idx < replicas,
          state: (s?.value.state as string | undefined) ?? null,
          formnetIp: (s?.value.formnetIp as string | undefined) ?? null,
          revision: (s?.value.revision as number | undefined) ?? null,
          reason: (s?.value.reason as string | undefined) ?? null,
          ts: s?.ts ?? null,
        };
      });
      instances.push({
        id,
        owner: c.author,
        ownerAddress: addressOf(c.author),
        name: c.body.name as string,
        formpackId: f(i.fields, 'formpackId', c.body.formpackId as string),
        replicas,
        resources: f(i.fields, 'resources', c.body.resources as Resources),
        desired: f(i.fields, 'desired', 'running' as 'running' | 'stopped'),
        createdBy: i.create.hash,
        deleted: i.deleted !== undefined,
        revision: i.commit?.revision ?? 0,
        revisionHash: i.commit?.value ?? null,
        replicaSet,
      });
    }
    instances.sort(byKey((i) => i.id));

    const formnetPeers: FormnetPeerView[] = [...this.peers.entries()]
      .filter(([, m]) => f(m, 'active', false) && f(m, 'wgPublicKey', '') !== '')
      .map(([pk, m]) => ({
        publicKey: pk,
        wgPublicKey: f(m, 'wgPublicKey', ''),
        endpoint: f<string | null>(m, 'endpoint', null),
        allowedIps: f<string[]>(m, 'allowedIps', []),
      }))
      .sort(byKey((p) => p.publicKey));

    const allocations: AllocationView[] = [...this.allocations.values()]
      .map((x) => ({
        address: x.value.body.address as string,
        peer: x.value.body.peer as string,
        kind: x.value.body.kind as string,
        allocatedBy: x.value.author,
        op: x.hash,
      }))
      .sort(byKey((x) => x.address));

    // DNS: every live instance gets <id>.<domain>; <name>.<domain> goes to the instance whose create
    // ranks first by (depth, hash). Explicit records may not shadow derived names.
    const dns = new Map<string, DnsRecordView>();
    const live = instances.filter((i) => !i.deleted);
    // Addresses of running replicas, at most `replicas` of them: the first claims first, then the
    // claims that stand in for them (a healed replica on another node is reachable by name too).
    const ipsOf = (i: InstanceView) =>
      [
        ...new Set(
          i.replicaSet
            .filter((r) => r.state === 'running' && r.formnetIp)
            .sort((a, b) => Number(b.assigned) - Number(a.assigned))
            .slice(0, i.replicas)
            .map((r) => r.formnetIp as string),
        ),
      ].sort();
    const rankOf = (i: InstanceView) => ({ depth: this.instances.get(i.id)!.create!.depth, hash: i.createdBy });
    const byName = new Map<string, InstanceView>();
    for (const i of live) {
      const cur = byName.get(i.name);
      if (!cur || rankLess(rankOf(i), rankOf(cur))) byName.set(i.name, i);
    }
    for (const i of live) {
      const name = `${i.id}.${this.domain}`;
      dns.set(name, { name, source: 'instance', instanceId: i.id, addresses: ipsOf(i), owner: i.owner });
    }
    for (const [n, i] of byName) {
      const name = `${n}.${this.domain}`;
      dns.set(name, { name, source: 'instance', instanceId: i.id, addresses: ipsOf(i), owner: i.owner });
    }
    const instById = new Map(instances.map((i) => [i.id, i]));
    for (const [name, d] of this.dnsExplicit) {
      if (dns.has(name) || !d.claim) continue;
      const owner = d.claim.value;
      const rec = d.byAuthor.get(owner)!.value;
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

    return { nodes, accounts, formpacks, instances, formnetPeers, allocations, dns: dnsList };
  }
}

function getOrSet<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  let v = m.get(k);
  if (v === undefined) {
    v = make();
    m.set(k, v);
  }
  return v;
}
