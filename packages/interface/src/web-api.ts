/**
 * The dashboard's own API (the BFF under /api of `@formation/web`), shared by its server and the browser
 * app: `@formation/interface/web-api`. Types only, importing only pure contract modules, so the browser
 * build (no Node types) and the Node build both import it; nothing here runs.
 */
import type { ErrorBody } from './errors.ts';
import type { DeployStatus } from './types.ts';

export type { DeployStatus };

/** What a BFF route answers with when it fails: the error body of every Formation API. */
export type ApiErrorBody = ErrorBody;

export interface SessionInfo {
  address: string;
  expiresAt: number;
  /** True when `form web login` delegated to this session: it may ship, start, stop, delete, commit, build. */
  canManage: boolean;
}

export interface LoginTokenResponse {
  token: string;
  expiresAt: number;
  /** Path (with the token in its fragment) to open on the dashboard's origin. */
  path: string;
  /** The session key made for this login: `form web login` signs a delegation to it (unless --read-only). */
  delegate: string;
  /** When a session opened with this token ends at the latest (a delegation should last as long). */
  sessionExpiresAt: number;
}

/** The encrypted data disk of this node's replica (unlocking stays with `form disk unlock`, where the key is). */
export interface DiskInfo {
  state: 'absent' | 'locked' | 'unlocked' | 'unknown';
  detail: string;
}

/** The dashboard's answer to an action on an instance. */
export interface ActionResult {
  ok: true;
  id: string;
  message: string;
}

/** A build started from the dashboard (follow GET /api/builds/:buildId/log). */
export interface BuildStarted {
  buildId: string;
  /** The Formpack ID the build produces. */
  id: string;
  name: string;
  status: string;
  cached: boolean;
}

/** One line of a build log, as NDJSON: steps, output lines, and the end. */
export type BuildLogEvent =
  | { type: 'step'; step: string; detail?: string; elapsedMs: number }
  | { type: 'log'; line: string; elapsedMs: number }
  | { type: 'end'; status: string; error: { code: string; message: string; hint?: string } | null };

export interface ShipResultInfo {
  id: string;
  name: string;
  formpackId: string;
  replicas: number;
  created: boolean;
  updated: boolean;
}

export interface CommitResultInfo {
  instance: string;
  revision: number;
  sha256: string;
  bytes: number;
  frozenMs: number;
}

export interface ReplicaInfo {
  /** Node public key. */
  node: string;
  nodeAddress: string;
  nodeName: string | null;
  /** Replica state reported by the node: claimed, starting, running, stopped, failed, … */
  state: string;
  /** `unhealthy`: running, but its HEALTHCHECK fails; `suspended`: scaled to zero, woken by the next connection. */
  health: 'healthy' | 'unhealthy' | 'starting' | 'suspended' | 'stopped' | 'failed' | 'unknown';
  assigned: boolean;
  formnetIp: string | null;
  dnsName: string | null;
  revision: number | null;
  reason: string | null;
  /** When the node last reported on this replica (ms since epoch). */
  updatedAt: number | null;
  /** The replica runs on the node serving this dashboard: its console can be read. */
  local: boolean;
  vmName: string;
}

export interface InstanceInfo {
  id: string;
  name: string;
  status: DeployStatus;
  reason: string | null;
  running: number;
  wanted: number;
  desired: 'running' | 'stopped';
  formpackId: string;
  replicas: number;
  resources: { vcpu: number; memMiB: number; diskGiB: number };
  revision: number;
  dnsName: string | null;
  replicaSet: ReplicaInfo[];
}

export interface ConsoleInfo {
  instanceId: string;
  vmName: string;
  output: string;
}

export interface ArtifactInfo {
  file: string;
  sha256: string;
  bytes: number;
}

export interface FormpackInfo {
  id: string;
  name: string;
  /** Total artifact bytes. */
  size: number;
  /** Published in the network state (shippable from any node). */
  published: boolean;
  /** Built on this node: the manifest is available. */
  local: boolean;
  createdAt: string | null;
}

export interface FormpackDetail extends FormpackInfo {
  manifest: {
    resources: { vcpu: number; memMiB: number; diskGiB: number };
    cmdline: string;
    init: string;
    artifacts: Record<string, ArtifactInfo>;
    formfile: Record<string, unknown>;
    /** The measurement an instance of it must attest to (its own VCPU/MEM), as `sha256:<hex>`. */
    measurement: string | null;
  } | null;
  sha256s: Record<string, string>;
  instances: Array<{ id: string; name: string }>;
}

export interface NodeSummary {
  id: string;
  address: string;
  name: string | null;
  endpoint: string;
  formnetRange: string;
  capacity: { vcpu: number; memMiB: number; diskGiB: number };
  used: { vcpu: number; memMiB: number; diskGiB: number } | null;
  status: string | null;
  lastHeartbeat: number | null;
  /** This dashboard runs on this node. */
  self: boolean;
}

export interface PeerSummary {
  publicKey: string;
  address: string;
  kind: 'node' | 'instance' | 'developer' | 'other';
  label: string;
  endpoint: string | null;
  allowedIps: string[];
}

export interface MetricSample {
  ts: number;
  node: string;
  /** Share of the node's vCPUs allocated to instances, 0..1. */
  cpuAllocated: number;
  /** Share of the node's memory allocated to instances, 0..1. */
  memAllocated: number;
  /** Host load (1-min load average / cores, capped at 1) and memory in use, for the node serving the dashboard. */
  hostCpu: number | null;
  hostMem: number | null;
}

export interface NetworkInfo {
  self: { node: string; formnetAddress: string; domain: string; instanceCidr: string } | null;
  nodes: NodeSummary[];
  peers: PeerSummary[];
  samples: MetricSample[];
}

/** One log line of an instance (what `form logs` prints), made inert by the server. */
export interface LogLineInfo {
  seq: number;
  /** When the node read it (ms since the epoch). */
  t: number;
  stream: string;
  src: string;
  line: string;
}

/** The log lines of this node's replica after `after` (a cursor: the last `seq` seen). */
export interface LogsInfo {
  instanceId: string;
  vmName: string;
  entries: LogLineInfo[];
  lastSeq: number;
}

/** One metrics sample of this node's replica (the VMM's `GET /vms/:id/metrics`). */
export interface ReplicaMetricsInfo {
  instanceId: string;
  vmName: string;
  at: number;
  state: string;
  cpuSeconds: number | null;
  rssBytes: number | null;
  memMiB: number;
  disks: Array<{ disk: string; readBytes: number; writtenBytes: number }>;
  diskAllocatedBytes: number | null;
  net: { rxBytes: number; txBytes: number; rxPackets: number; txPackets: number } | null;
}
