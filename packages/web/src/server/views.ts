import { expectedMeasurement } from '@formation/attest';
import { addressOf as deriveAddress } from '@formation/identity';
import { type Address, FormError, type FormpackManifest } from '@formation/interface';
import type {
  DiskInfo,
  FormpackDetail,
  FormpackInfo,
  InstanceInfo,
  MetricSample,
  NetworkInfo,
  PeerSummary,
  ReplicaInfo,
} from '@formation/interface/web-api';
import { deploymentStatus, placementNodesFrom, vmNameFor } from '@formation/scheduler';
import type {
  AllocationView,
  DnsRecordView,
  FormnetPeerView,
  FormpackView,
  InstanceView,
  NodeView,
} from '@formation/state';

/*
 * Pure view mappers: node API data in, the dashboard's view types out. No Fastify, no I/O; the route
 * plugins fetch, these shape (tested in test/views.test.ts).
 */

type Resources = { vcpu: number; memMiB: number; diskGiB: number };
type NodeSummary = NetworkInfo['nodes'][number];

/** What the instance views need besides the instance: nodes, DNS names and which node is this one. */
export interface InstanceContext {
  instances: InstanceView[];
  nodes: NodeView[];
  dnsOf: Map<string, string>;
  selfNode: string | null;
}

/** Builds the instance context from the state reads and the formnet self (null when formnet is down). */
export function instanceContextFrom(
  instances: InstanceView[],
  nodes: NodeView[],
  dns: DnsRecordView[],
  self: { node: string } | null,
): InstanceContext {
  const byInstance = new Map<string, string[]>();
  for (const d of dns) {
    if (!d.instanceId) continue;
    byInstance.set(d.instanceId, [...(byInstance.get(d.instanceId) ?? []), d.name]);
  }
  const dnsOf = new Map<string, string>();
  for (const i of instances) {
    const names = byInstance.get(i.id) ?? [];
    // The short <name>.<domain> when this owner holds it, else the owner-qualified <name>.<address>.<domain>.
    const name = names.filter((n) => n.startsWith(`${i.name}.`)).sort((a, b) => a.length - b.length)[0] ?? names[0];
    if (name) dnsOf.set(i.id, name);
  }
  const selfNode = self ? (nodes.find((n) => n.address === self.node)?.id ?? null) : null;
  return { instances, nodes, dnsOf, selfNode };
}

/** The developer's live instance by id or name; someone else's is "not found" too. */
export function ownInstance(instances: InstanceView[], ref: string, address: Address): InstanceView {
  const inst = instances.find((i) => !i.deleted && i.ownerAddress === address && (i.id === ref || i.name === ref));
  // Someone else's instance is "not found" too: the dashboard does not reveal what others run.
  if (!inst) {
    throw new FormError('INSTANCE_NOT_FOUND', `You have no instance ${ref}`, {
      hint: 'The Instances page lists yours.',
    });
  }
  return inst;
}

/**
 * A replica as the dashboard's health column shows it: its state, and for a running replica whose
 * Formpack has a HEALTHCHECK the node's latest verdict (instance.health) for the release it runs.
 */
export function health(
  state: string | null,
  verdict?: { status: 'starting' | 'healthy' | 'unhealthy'; release: number } | null,
  release?: number | null,
): ReplicaInfo['health'] {
  switch (state) {
    case 'running': {
      // A verdict about another release (the VM was replaced since) says nothing about this one.
      if (!verdict || (release != null && verdict.release !== release)) return 'healthy';
      return verdict.status;
    }
    case 'suspended':
      return 'suspended';
    case 'failed':
      return 'failed';
    case 'stopped':
    case 'deleted':
      return 'stopped';
    case null:
    case 'claimed':
    case 'pending':
    case 'starting':
      return 'starting';
    default:
      return 'unknown';
  }
}

/**
 * One instance as the dashboard shows it: deployment status (by the same placement input the nodes
 * place by: a recent heartbeat, not draining; this node counts), DNS name and replicas.
 */
export function instanceInfo(i: InstanceView, ctx: InstanceContext, now: number, nodeTimeoutMs: number): InstanceInfo {
  const s = deploymentStatus(i, placementNodesFrom(ctx.nodes, now, nodeTimeoutMs, ctx.selfNode ?? undefined));
  const dnsName = ctx.dnsOf.get(i.id) ?? null;
  return {
    id: i.id,
    name: i.name,
    status: s.status,
    reason: s.reason ?? null,
    running: s.running,
    wanted: s.wanted,
    desired: i.desired,
    formpackId: i.formpackId,
    replicas: i.replicas,
    resources: i.resources,
    revision: i.revision,
    dnsName,
    replicaSet: i.replicaSet.map((r) => {
      const node = ctx.nodes.find((n) => n.id === r.node);
      return {
        node: r.node,
        nodeAddress: node?.address ?? r.node,
        nodeName: node?.name ?? null,
        state: r.state ?? 'claimed',
        health: health(r.state, r.health, r.release),
        assigned: r.assigned,
        formnetIp: r.formnetIp,
        dnsName,
        revision: r.revision,
        reason: r.reason,
        updatedAt: r.ts,
        local: ctx.selfNode === r.node,
        vmName: vmNameFor(i),
      };
    }),
  };
}

/** Resources of the replicas each node runs or is starting (from state: every node's view, not only ours). */
export function usedByNode(instances: InstanceView[]): Map<string, Resources> {
  const used = new Map<string, Resources>();
  for (const i of instances) {
    if (i.deleted) continue;
    for (const r of i.replicaSet) {
      if (r.state !== 'running' && r.state !== 'starting') continue;
      const u = used.get(r.node) ?? { vcpu: 0, memMiB: 0, diskGiB: 0 };
      used.set(r.node, {
        vcpu: u.vcpu + i.resources.vcpu,
        memMiB: u.memMiB + i.resources.memMiB,
        diskGiB: u.diskGiB + i.resources.diskGiB,
      });
    }
  }
  return used;
}

/** A node for the Network page: the heartbeat's load when it has one, else what state says it runs. */
export function nodeSummary(n: NodeView, selfAddress: string | undefined, used: Resources | undefined): NodeSummary {
  return {
    id: n.id,
    address: n.address,
    name: n.name,
    endpoint: n.endpoint,
    formnetRange: n.formnetRange,
    capacity: n.capacity,
    used: n.heartbeat?.used ?? used ?? { vcpu: 0, memMiB: 0, diskGiB: 0 },
    status: n.heartbeat?.status ?? null,
    lastHeartbeat: n.heartbeat?.ts ?? null,
    self: n.address === selfAddress,
  };
}

/** The address behind a formnet public key: a node's, else derived from the key. */
export function addressOfKey(publicKey: string, nodes: NodeView[]): string {
  const n = nodes.find((x) => x.id === publicKey);
  if (n) return n.address;
  try {
    return deriveAddress(publicKey);
  } catch {
    return publicKey.slice(0, 42);
  }
}

/** The formnet peers, each with what it is (node, instance, developer, other) and a label. */
export function peerSummaries(
  peers: FormnetPeerView[],
  nodes: NodeView[],
  allocations: AllocationView[],
): PeerSummary[] {
  const kindOf = new Map(allocations.map((a) => [a.peer, a.kind]));
  return peers.map((p): PeerSummary => {
    const node = nodes.find((n) => n.id === p.publicKey);
    const k = node ? 'node' : kindOf.get(p.publicKey);
    const kind = k === 'node' || k === 'instance' || k === 'developer' ? k : node ? 'node' : 'other';
    const address = addressOfKey(p.publicKey, nodes);
    return {
      publicKey: p.publicKey,
      address,
      kind,
      label: node?.name ?? `${kind} ${address.slice(0, 10)}`,
      endpoint: p.endpoint,
      allowedIps: p.allowedIps,
    };
  });
}

/** Host load of this node (null elsewhere), as fractions. */
export interface HostLoad {
  cpu: number;
  mem: number;
}

/** One load sample of node `n`: allocation against capacity, and the host's own load when it is this node. */
export function metricSample(
  n: NodeView,
  used: Resources | undefined,
  host: HostLoad | null,
  ts: number,
): MetricSample {
  return {
    ts,
    node: n.id,
    cpuAllocated: used && n.capacity.vcpu > 0 ? Math.min(1, used.vcpu / n.capacity.vcpu) : 0,
    memAllocated: used && n.capacity.memMiB > 0 ? Math.min(1, used.memMiB / n.capacity.memMiB) : 0,
    hostCpu: host ? host.cpu : null,
    hostMem: host ? host.mem : null,
  };
}

const totalBytes = (m: FormpackManifest) => Object.values(m.artifacts).reduce((n, a) => n + a.bytes, 0);

/** The developer's Formpacks: built on this node (local) merged with published ones, by id. */
export function formpackList(local: FormpackManifest[], published: FormpackView[], owner: Address): FormpackInfo[] {
  const out = new Map<string, FormpackInfo>();
  for (const m of local.filter((m) => m.owner === owner)) {
    out.set(m.id, {
      id: m.id,
      name: m.name,
      size: totalBytes(m),
      published: false,
      local: true,
      createdAt: m.createdAt,
    });
  }
  for (const p of published.filter((p) => p.owner === owner)) {
    const cur = out.get(p.id);
    out.set(p.id, cur ? { ...cur, published: true } : { ...p, published: true, local: false, createdAt: null });
  }
  return [...out.values()].map(({ id, name, size, published, local, createdAt }) => ({
    id,
    name,
    size,
    published,
    local,
    createdAt,
  }));
}

/**
 * One Formpack's page: from its manifest when this node has it, else from its published record.
 * Throws PACK_NOT_FOUND when neither exists or it is someone else's.
 */
export function formpackDetail(
  id: string,
  manifest: FormpackManifest | undefined,
  published: FormpackView[],
  instances: InstanceView[],
  owner: Address,
): FormpackDetail {
  const pub = published.find((p) => p.id === id || (manifest && p.id === manifest.id));
  const packOwner = manifest?.owner ?? pub?.owner;
  if (!packOwner || packOwner !== owner) {
    throw new FormError('PACK_NOT_FOUND', `You have no Formpack ${id}`, {
      hint: 'The Formpacks page lists yours.',
    });
  }
  const fullId = manifest?.id ?? pub!.id;
  const m = manifest as (typeof manifest & { measurement?: string }) | undefined;
  return {
    id: fullId,
    name: manifest?.name ?? pub!.name,
    size: manifest ? totalBytes(manifest) : pub!.size,
    published: pub !== undefined,
    local: manifest !== undefined,
    createdAt: manifest?.createdAt ?? null,
    sha256s: pub?.sha256s ?? Object.fromEntries(Object.entries(manifest!.artifacts).map(([k, a]) => [k, a.sha256])),
    manifest: m
      ? {
          resources: m.resources,
          cmdline: m.cmdline,
          init: m.init,
          artifacts: m.artifacts as unknown as Record<string, { file: string; sha256: string; bytes: number }>,
          formfile: m.formfile as unknown as Record<string, unknown>,
          // What an instance of it must attest to (`form pack inspect --measurement`), from the manifest alone.
          measurement: measurementOf(m),
        }
      : null,
    instances: instances
      .filter((i) => !i.deleted && i.formpackId === fullId && i.ownerAddress === owner)
      .map((i) => ({ id: i.id, name: i.name })),
  };
}

/** `sha256:<digest>` an instance of `m` must attest to, or null when the manifest lacks what it needs. */
export function measurementOf(m: FormpackManifest): string | null {
  try {
    return `sha256:${expectedMeasurement(m).digest}`;
  } catch {
    return null;
  }
}

/** What the VMM says about a replica's data disk. */
export interface VmmDiskState {
  state: DiskInfo['state'];
  luks?: string;
  mount?: string;
  error?: string;
}

/** The data disk's lock state in words. */
export function diskInfo(d: VmmDiskState): DiskInfo {
  const detail =
    d.state === 'unlocked'
      ? `mounted at ${d.mount ?? '/data'}`
      : d.state === 'locked'
        ? d.luks === 'no'
          ? 'blank: formatted at the first unlock'
          : 'encrypted, not opened since the replica booted'
        : d.state === 'absent'
          ? 'this replica has no data disk'
          : (d.error ?? 'unknown');
  return { state: d.state, detail };
}
