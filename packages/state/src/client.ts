import { actingPublicKey, type KeyPair } from '@formation/identity';
import { domainTokenOf, instanceIdOf } from './kinds.ts';
import { httpStateClient as readClient } from './light-client.ts';
import { createOp, type Op, type OpKind } from './op.ts';
import { type ApplyResult, type StateStore, withDelegation } from './store.ts';
import type {
  AllocationView,
  ConflictView,
  DnsRecordView,
  DomainView,
  FormnetPeerView,
  FormpackView,
  InstanceView,
  NetworkView,
  NodeView,
  PortView,
} from './views.ts';

export type SubmitResult = { status: 'accepted' | 'duplicate' | 'pending'; hash: string; missing?: string[] };

/** One interface for the node daemon, in-process (`localStateClient`) or over HTTP (`httpStateClient`). */
export interface StateClient {
  /** Sign and submit an op by `key`, with deps built from the current heads and required references. */
  author(key: KeyPair, kind: OpKind, body: Record<string, unknown>): Promise<Op>;
  submit(op: Op): Promise<SubmitResult>;
  applyBatch(ops: Op[]): Promise<ApplyResult>;
  heads(): Promise<string[]>;
  digest(): Promise<string>;
  sync(heads: string[], limit?: number): Promise<{ ops: Op[]; heads: string[] }>;
  getOp(hash: string): Promise<Op | undefined>;
  nodes(): Promise<NodeView[]>;
  instances(): Promise<InstanceView[]>;
  instance(id: string): Promise<InstanceView | undefined>;
  formpacks(): Promise<FormpackView[]>;
  formnetPeers(): Promise<FormnetPeerView[]>;
  allocations(): Promise<AllocationView[]>;
  dns(): Promise<DnsRecordView[]>;
  /** The network: genesis, admission policy, admins, quotas, nodes awaiting admission. */
  network(): Promise<NetworkView>;
  /** What two parties hold at once (slices, WireGuard keys, names, addresses): each loses it. */
  conflicts(): Promise<ConflictView[]>;
  /** Custom domains: claims, their proofs' verifications and who holds each name. */
  domains(): Promise<DomainView[]>;
  /** Public TCP port claims: who holds each port, grants. */
  ports(): Promise<PortView[]>;
}

/** The in-process client: calls the store directly. */
export function localStateClient(store: StateStore): StateClient {
  return {
    author: async (key, kind, body) => store.author(key, kind, body),
    submit: async (op) => {
      const problem = store.apiProblem(op);
      if (problem) throw problem;
      return store.submit(op);
    },
    applyBatch: async (ops) => store.applyBatch(ops),
    heads: async () => store.heads(),
    digest: async () => store.digest(),
    sync: async (heads, limit) => ({ ops: store.opsSince(heads, limit), heads: store.heads() }),
    getOp: async (hash) => store.getOp(hash),
    nodes: async () => store.views().nodes,
    instances: async () => store.views().instances,
    instance: async (id) => store.views().instances.find((i) => i.id === id),
    formpacks: async () => store.views().formpacks,
    formnetPeers: async () => store.views().formnetPeers,
    allocations: async () => store.views().allocations,
    dns: async () => store.views().dns,
    network: async () => store.views().network,
    conflicts: async () => store.views().conflicts,
    domains: async () => store.views().domains,
    ports: async () => store.views().ports,
  };
}

/** The HTTP client for a state API at `baseUrl` (e.g. http://127.0.0.1:3004). */
export function httpStateClient(baseUrl: string): StateClient {
  // The reads and submits are the light client's (`@formation/state/client`); only `author` needs the op rules.
  const client: StateClient = {
    ...readClient(baseUrl),
    async author(key, kind, body) {
      const ts = Date.now();
      const b = withDelegation(key, kind, body);
      const actor = actingPublicKey(key);
      if (kind === 'instance.create' && b.id === undefined) b.id = instanceIdOf(actor, String(b.name), ts);
      if (kind === 'dns.claim' && b.token === undefined) b.token = domainTokenOf(actor, String(b.name), ts);
      // A genesis has no deps; everything else cites the heads plus what its rule needs.
      const deps = kind === 'network.init' ? [] : await client.heads();
      const id = b.instanceId as string | undefined;
      if (
        (id && kind.startsWith('instance.')) ||
        ((kind === 'dns.record' || kind === 'dns.claim' || kind === 'port.claim') && id)
      ) {
        const inst = await client.instance(id as string);
        if (inst && kind !== 'instance.status') deps.push(inst.createdBy);
      }
      if (kind === 'formnet.allocate') {
        // Only nodes allocate, citing their own registration (listed only once admitted).
        const me = (await client.nodes()).find((n) => n.id === key.publicKey);
        if (me) deps.push(me.registeredBy);
      }
      if (kind === 'node.admit' || kind === 'node.remove') {
        const { genesis } = await client.network();
        if (genesis) deps.push(genesis);
      }
      const op = createOp(key, kind, b, deps, ts);
      await client.submit(op);
      return op;
    },
  };
  return client;
}
