import type { FormpackManifest } from '@formation/interface';
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
  { service: 'pack', method: 'get', path: '/formpacks/{id}', fields: ['id', 'name', 'owner', 'artifacts', 'formfile'] },
  { service: 'vmm', method: 'get', path: '/vms', fields: ['vms'] },
  { service: 'vmm', method: 'get', path: '/vms/{id}/console', fields: ['id', 'output'] },
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

/** Read-only, unsigned clients for the node APIs, with a short timeout so a slow node cannot stall a page. */
export class NodeApis {
  private readonly state: ApiClient;
  private readonly pack: ApiClient;
  private readonly vmm: ApiClient;
  private readonly formnet: ApiClient;

  constructor(urls: NodeApiUrls, timeoutMs = 5000) {
    this.state = new ApiClient(urls.state, undefined, timeoutMs);
    this.pack = new ApiClient(urls.pack, undefined, timeoutMs);
    this.vmm = new ApiClient(urls.vmm, undefined, timeoutMs);
    this.formnet = new ApiClient(urls.formnet, undefined, timeoutMs);
  }

  instances = () => this.state.request<InstanceView[]>('GET', '/instances');
  nodes = () => this.state.request<NodeView[]>('GET', '/nodes');
  publishedFormpacks = () => this.state.request<FormpackView[]>('GET', '/formpacks');
  dns = () => this.state.request<DnsRecordView[]>('GET', '/dns');
  peers = () => this.state.request<FormnetPeerView[]>('GET', '/formnet/peers');
  allocations = () => this.state.request<AllocationView[]>('GET', '/formnet/allocations');
  localFormpacks = async () =>
    (await this.pack.request<{ formpacks: FormpackManifest[] }>('GET', '/formpacks')).formpacks;
  manifest = (id: string) => this.pack.request<FormpackManifest>('GET', `/formpacks/${encodeURIComponent(id)}`);
  vms = async () => (await this.vmm.request<{ vms: VmSummary[] }>('GET', '/vms')).vms;
  console = (id: string, bytes: number) =>
    this.vmm.request<{ id: string; output: string }>('GET', `/vms/${encodeURIComponent(id)}/console?bytes=${bytes}`);
  self = () => this.formnet.request<SelfNode>('GET', '/node');
}
