import type { KeyPair } from '@formation/identity';
import { FormError, type FormpackManifest, type VmSample } from '@formation/interface';
import { ApiClient } from '@formation/service';
import type {
  AllocationView,
  DnsRecordView,
  FormnetPeerView,
  FormpackView,
  InstanceView,
  NodeView,
} from '@formation/state';

/** Base URLs of the node APIs the dashboard reads. */
export interface NodeApiUrls {
  state: string;
  pack: string;
  vmm: string;
  formnet: string;
}

/**
 * Every node API call the dashboard makes: service, method, OpenAPI path and the response fields it
 * reads. test/openapi.test.ts checks each against the services' /openapi.json documents.
 */
export const UPSTREAM_CALLS = [
  { service: 'state', method: 'get', path: '/instances', fields: [] },
  { service: 'state', method: 'get', path: '/nodes', fields: [] },
  { service: 'state', method: 'get', path: '/formpacks', fields: [] },
  { service: 'state', method: 'get', path: '/dns', fields: [] },
  { service: 'state', method: 'get', path: '/formnet/peers', fields: [] },
  { service: 'state', method: 'get', path: '/formnet/allocations', fields: [] },
  { service: 'pack', method: 'get', path: '/formpacks', fields: ['formpacks'] },
  // The pack API documents only id, name and owner of a manifest (the rest passes as additionalProperties).
  { service: 'pack', method: 'get', path: '/formpacks/{id}', fields: ['id', 'name', 'owner'] },
  { service: 'vmm', method: 'get', path: '/vms', fields: ['vms'] },
  // Actions (signed by the session key under the developer's delegation):
  { service: 'state', method: 'post', path: '/ops', fields: [] },
  { service: 'pack', method: 'post', path: '/contexts', fields: [] },
  { service: 'pack', method: 'post', path: '/builds', fields: [] },
  { service: 'pack', method: 'get', path: '/builds/{buildId}', fields: ['owner'] },
  { service: 'pack', method: 'get', path: '/builds/{buildId}/log', fields: [] },
  { service: 'vmm', method: 'post', path: '/vms/{id}/commit', fields: [] },
  // attestation routes live on the VMM API: the lock state of a replica's encrypted data disk
  { service: 'vmm', method: 'post', path: '/attest/vms/{ref}/disk', fields: [] },
  { service: 'vmm', method: 'get', path: '/vms/{id}/console', fields: ['id', 'output'] },
  { service: 'vmm', method: 'get', path: '/vms/{id}/logs', fields: ['entries', 'lastSeq'] },
  { service: 'vmm', method: 'get', path: '/vms/{id}/metrics', fields: [] },
  {
    service: 'formnet',
    method: 'get',
    path: '/node',
    fields: ['node', 'formnetAddress', 'domain', 'instanceCidr'],
  },
] as const;

export interface VmSummary {
  id: string;
  name: string;
  state: string;
  stateReason: string;
  ready: boolean;
}

export interface SelfNode {
  node: string;
  formnetAddress: string;
  domain: string;
  instanceCidr: string;
}

type Service = keyof NodeApiUrls;

/** A log line as the VMM serves it (`GET /vms/:id/logs`). */
export interface VmLogEntry {
  seq: number;
  t: number;
  stream: string;
  src: string;
  line: string;
}

/** What the dashboard reads of the VMM's `GET /vms/:id/metrics`. */
export type VmMetricsSample = Pick<
  VmSample,
  'at' | 'state' | 'cpuSeconds' | 'rssBytes' | 'memMiB' | 'disks' | 'diskAllocatedBytes' | 'net'
>;

/**
 * Read-only clients for the node APIs, with a short timeout so a slow node cannot stall a page. Reads
 * the VMM keeps to owners (VM lists, consoles) are signed with `nodeKey` — the dashboard runs inside
 * the node and filters per session itself; without a key they go unsigned.
 */
export class NodeApis {
  private readonly clients: Record<Service, ApiClient>;

  constructor(urls: NodeApiUrls, timeoutMs = 5000, nodeKey?: KeyPair) {
    this.clients = {
      state: new ApiClient(urls.state, undefined, timeoutMs),
      pack: new ApiClient(urls.pack, undefined, timeoutMs),
      vmm: new ApiClient(urls.vmm, nodeKey, timeoutMs),
      formnet: new ApiClient(urls.formnet, undefined, timeoutMs),
    };
  }

  /** GET from one service; a node that cannot be reached becomes one clear UNAVAILABLE/TIMEOUT error. */
  private async get<T>(service: Service, path: string): Promise<T> {
    try {
      return await this.clients[service].request<T>('GET', path);
    } catch (err) {
      const fe = err as FormError;
      if (fe.code === 'CLI_NO_NODE' || fe.code === 'UNAVAILABLE' || fe.code === 'TIMEOUT') {
        throw new FormError(
          fe.code === 'TIMEOUT' ? 'TIMEOUT' : 'UNAVAILABLE',
          `Cannot reach this node's ${service} API: ${fe.message}`,
          { hint: 'Is formationd running? Check `form node status` and the node log.' },
        );
      }
      throw err;
    }
  }

  instances = () => this.get<InstanceView[]>('state', '/instances');
  nodes = () => this.get<NodeView[]>('state', '/nodes');
  publishedFormpacks = () => this.get<FormpackView[]>('state', '/formpacks');
  dns = () => this.get<DnsRecordView[]>('state', '/dns');
  peers = () => this.get<FormnetPeerView[]>('state', '/formnet/peers');
  allocations = () => this.get<AllocationView[]>('state', '/formnet/allocations');
  localFormpacks = async () => (await this.get<{ formpacks: FormpackManifest[] }>('pack', '/formpacks')).formpacks;
  manifest = (id: string) => this.get<FormpackManifest>('pack', `/formpacks/${encodeURIComponent(id)}`);
  vms = async () => (await this.get<{ vms: VmSummary[] }>('vmm', '/vms')).vms;
  console = (id: string, bytes: number) =>
    this.get<{ id: string; output: string }>('vmm', `/vms/${encodeURIComponent(id)}/console?bytes=${bytes}`);
  self = () => this.get<SelfNode>('formnet', '/node');
  logs = (id: string, after?: number) =>
    this.get<{ entries: VmLogEntry[]; lastSeq: number }>(
      'vmm',
      `/vms/${encodeURIComponent(id)}/logs?limit=500${after !== undefined ? `&after=${after}` : ''}`,
    );
  vmMetrics = (id: string) => this.get<VmMetricsSample>('vmm', `/vms/${encodeURIComponent(id)}/metrics`);
}
