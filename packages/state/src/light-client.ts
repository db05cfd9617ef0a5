// `@formation/state/client`: what a tool that only talks to a node's state API needs (the `form` CLI),
// without loading the store (node:sqlite, worker threads) or the op schemas (TypeBox compiled at load):
// the HTTP client, the view and op types, and shipFormpack. `httpStateClient` from `@formation/state` is
// this client plus `author`; here `author` (which needs the delegation and op rules) loads that one on
// first use.
import type { KeyPair } from '@formation/identity';
import { ApiClient } from '@formation/service/client';
import type { StateClient, SubmitResult } from './client.ts';
import type { Op } from './op.ts';
import type { ApplyResult } from './store.ts';
import type { InstanceView } from './views.ts';

export type { StateClient, SubmitResult } from './client.ts';
export type { Op, OpKind, UnsignedOp } from './op.ts';
export type { ReleaseResult, ReleaseView } from './releases.ts';
export { type ShipOptions, type ShipResult, shipFormpack } from './ship.ts';
export type { ApplyResult } from './store.ts';
export type {
  AdmissionPolicy,
  AllocationView,
  ConflictView,
  DnsRecordView,
  DomainView,
  FormnetPeerView,
  FormpackView,
  InstanceFormpack,
  InstanceView,
  NetworkView,
  NodeView,
  PortView,
  Quotas,
  ReplicaView,
} from './views.ts';

/** The HTTP client for a state API at `baseUrl` (e.g. http://127.0.0.1:3004); same behaviour as the index's. */
export function httpStateClient(baseUrl: string): StateClient {
  const api = new ApiClient(baseUrl);
  const get = <T>(path: string) => api.request<T>('GET', path);
  const post = <T>(path: string, body: unknown) => api.request<T>('POST', path, body, { sign: false });
  let full: Promise<StateClient> | undefined;
  const fullClient = () => {
    full ??= import('./client.ts').then((m) => m.httpStateClient(baseUrl));
    return full;
  };
  return {
    author: async (key: KeyPair, kind, body) => (await fullClient()).author(key, kind, body),
    submit: (op) => post<SubmitResult>('/ops', op),
    applyBatch: (ops) => post<ApplyResult>('/ops/batch', { ops }),
    heads: async () => (await get<{ heads: string[] }>('/heads')).heads,
    digest: async () => (await get<{ digest: string }>('/digest')).digest,
    sync: (heads, limit) => post<{ ops: Op[]; heads: string[] }>('/sync', limit ? { heads, limit } : { heads }),
    getOp: async (hash) => {
      try {
        return await get<Op>(`/ops/${hash}`);
      } catch (err) {
        if ((err as { code?: string }).code === 'STATE_OP_NOT_FOUND') return undefined;
        throw err;
      }
    },
    nodes: () => get('/nodes'),
    instances: () => get('/instances'),
    instance: async (id) => {
      try {
        return await get<InstanceView>(`/instances/${encodeURIComponent(id)}`);
      } catch (err) {
        if ((err as { code?: string }).code === 'INSTANCE_NOT_FOUND') return undefined;
        throw err;
      }
    },
    formpacks: () => get('/formpacks'),
    formnetPeers: () => get('/formnet/peers'),
    allocations: () => get('/formnet/allocations'),
    dns: () => get('/dns'),
    network: () => get('/network'),
    conflicts: () => get('/conflicts'),
    domains: () => get('/dns/domains'),
    ports: () => get('/ports'),
  };
}
