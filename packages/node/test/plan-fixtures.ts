// The fixtures of the plan tables (plan.test.ts, plan-ready.test.ts): one instance with this node's
// replica, running on a ready VM, at a fixed time; each row overrides what it is about.
import type { PlacementNode } from '@formation/scheduler';
import type { ReplicaView } from '@formation/state';
import type { VmView } from '@formation/vmm';
import type { PlanInput, PlanInstance } from '../src/plan.ts';

export const ME = 'me-node';
export const NOW = Date.parse('2026-01-01T00:00:00.000Z');
export const FP = 'f'.repeat(64);
export const HASH = 'a'.repeat(64);
export const iso = (ms: number) => new Date(ms).toISOString();

export const node = (id: string): PlacementNode => ({
  id,
  capacity: { vcpu: 8, memMiB: 8192, diskGiB: 100 },
  used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
  healthy: true,
});
export const HERE = [node(ME)];
export const ELSEWHERE = [node('other-node')];

export const replica = (over: Partial<ReplicaView> = {}): ReplicaView => ({
  node: ME,
  claimedBy: 'c'.repeat(64),
  assigned: true,
  state: 'running',
  formnetIp: '10.129.1.2',
  revision: 0,
  reason: null,
  ts: NOW - 1000,
  ...over,
});

// Cast: the state view grows fields (formpack, overQuota, …) that planning does not read.
export const instance = (over: Partial<PlanInstance> = {}, mine: Partial<ReplicaView> | null = {}): PlanInstance =>
  ({
    id: 'i'.repeat(32),
    owner: 'owner-key',
    ownerAddress: '0xowner',
    name: 'hello',
    formpackId: FP,
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
    desired: 'running',
    createdBy: 'd'.repeat(64),
    deleted: false,
    revision: 0,
    revisionHash: null,
    replicaSet: mine === null ? [] : [replica(mine)],
    ...over,
  }) as PlanInstance;

export const vm = (over: Partial<VmView> = {}): VmView => ({
  id: 'vm-1',
  name: 'hello-iiiiii',
  owner: '0xowner',
  state: 'running',
  stateReason: 'started',
  source: { kind: 'formpack', id: FP, name: 'hello', dir: '/fp' },
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  network: { mode: 'tap', ip: '10.129.1.2/24', gateway: '10.129.1.1', mac: '02:00:00:00:00:01', forwards: [] },
  pid: 123,
  ready: true,
  startedAt: iso(NOW - 60_000),
  readyAt: iso(NOW - 50_000),
  bootMs: 10_000,
  measurement: null,
  health: null,
  lastExit: null,
  restartPolicy: 'never',
  restarts: 0,
  snapshots: [],
  revisions: [],
  createdAt: iso(NOW - 60_000),
  updatedAt: iso(NOW - 50_000),
  ...over,
});

export const input = (over: Partial<PlanInput> = {}): PlanInput => ({
  instance: instance(),
  me: ME,
  nodes: HERE,
  vm: vm(),
  now: NOW,
  retryAfterMs: 60_000,
  hasEntrypoint: false,
  canFetchRevisions: true,
  ...over,
});

export const settled = { status: 'running' as const, pid: 7, restarts: 0 };
export const committed = { revision: 2, revisionHash: HASH };
