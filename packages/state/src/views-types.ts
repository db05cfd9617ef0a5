import type { GpuDevice, GpuRequest, HealthcheckSpec } from '@formation/interface';
import type { ReleaseView } from './releases.ts';

// The public views of the replicated state (what `store.views()` returns) and the limits they apply.
// Types only and constants: importable without the fold or render code.

type Resources = { vcpu: number; memMiB: number; diskGiB: number };

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
  /** `HTTPS <port> TERMINATE=ingress`: TLS ends at the ingress nodes, plain HTTP goes to `port`. */
  ingressTls?: { port: number };
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
