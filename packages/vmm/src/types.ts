import type { Resources } from '@formation/interface';
import type { TemplateWant } from './boot-snapshot.ts';
import type { DriverVm } from './driver.ts';
import type { VmNetAssignment } from './network.ts';
import type { VmState } from './state-machine.ts';

/** Where a VM's disk and kernel came from. */
export type VmSource =
  | { kind: 'formpack'; id: string; name: string; dir: string }
  | { kind: 'image'; name: string; file: string; format: 'raw' | 'qcow2' | 'vmdk' | 'formpack' };

export interface SnapshotRecord {
  id: string;
  createdAt: string;
  dir: string;
  memoryBytes: number;
  diskBytes: number;
  totalMs: number;
  /** Whether the guest had reported ready when the snapshot was taken. */
  ready: boolean;
}

/** Result of the periodic guest check. */
export interface VmHealth {
  checkedAt: string;
  agent: 'ok' | 'unreachable';
  agentError?: string | undefined;
  entrypoint?:
    | { status: 'running'; pid: number; restarts: number; runningForMs?: number | undefined }
    | { status: 'exited'; code: number; restarts: number }
    | { status: 'unknown'; detail: string }
    | undefined;
  /** Set once the VMM acted on a dead entrypoint (so it acts once). */
  acted?: boolean | undefined;
}

/** The persisted record of one VM (JSON, one file per VM). */
/** A committed revision of a VM's disk (`form commit`): the overlay as it was, frozen and hashed. */
export interface RevisionRecord {
  revision: number;
  createdAt: string;
  /** sha256 of the revision file (what replicas verify). */
  sha256: string;
  bytes: number;
  file: string;
  /** Guest downtime: from freeze to thaw (ms). */
  frozenMs: number;
}

export interface VmRecord {
  id: string;
  name: string;
  /** Address of the signer who created it; only it may act on the VM. Null for internal VMs. */
  owner: string | null;
  createdAt: string;
  updatedAt: string;
  source: VmSource;
  resources: Resources;
  state: VmState;
  stateReason: string;
  lastExit?: { kind: string; reason: string; at: string } | undefined;
  restartPolicy: 'never' | 'on-failure';
  restarts: number;
  network: VmNetAssignment;
  driver: DriverVm;
  snapshots: SnapshotRecord[];
  /** Committed disk revisions, oldest first (absent in records written before commits existed). */
  revisions?: RevisionRecord[] | undefined;
  /** Serial log size when the current boot began (readiness is searched after it). */
  serialOffset: number;
  ready: boolean;
  startedAt?: string | undefined;
  readyAt?: string | undefined;
  /** ms from launch to FORM-INIT-READY of the last boot. */
  bootMs?: number | undefined;
  /** What was booted (DESIGN "measured boot"); the node daemon signs it with the node key. */
  measurement?: VmMeasurement | undefined;
  /** Boot snapshots: the guest takes its identity over the agent (instance-neutral cmdline) and its template. */
  bootSnapshot?: { identity: 'agent' | 'cmdline'; want: TemplateWant } | undefined;
  /** How the last boot started. */
  boot?: VmBoot | undefined;
  /** Guest TCP ports (22 + the Formpack's EXPOSE): what a suspended VM's wake gate answers on. */
  ports?: number[] | undefined;
  /** Set while suspended to disk: the memory image (guest memory: 0600, under the VM's dir). */
  suspended?: SuspendedImage | undefined;
  /**
   * A standby VM (vm-standby.ts): restored paused from its template, no identity, no owner, not listed;
   * taken by the next create of the same shape. A VMM that finds one at start removes it.
   */
  standby?: boolean | undefined;
}

/** A suspended VM's memory image and what `wake` checks it against. */
export interface SuspendedImage {
  file: string;
  bytes: number;
  sha256: string;
  at: string;
  saveMs: number;
  /** Whether the guest had reported ready when it was suspended (it is again once resumed). */
  ready: boolean;
}

/** How a boot started: `snapshot` = restored from the Formpack's boot template; `fallback` = why not. */
export interface VmBoot {
  kind: 'cold' | 'snapshot';
  launchedAt: string;
  fallback?: string | undefined;
  /** A snapshot boot that took a standby VM (already restored, paused): only resumed and released. */
  standby?: boolean | undefined;
}

/** sha256 of what a VM boots: kernel, initramfs, full command line, base disk (null when not known). */
export interface VmMeasurement {
  kernel: string;
  initramfs: string | null;
  cmdline: string;
  disk: string | null;
}

/** What the API returns for a VM. */
export interface VmView {
  id: string;
  name: string;
  owner: string | null;
  state: VmState;
  stateReason: string;
  source: VmSource;
  resources: Resources;
  network: Omit<VmNetAssignment, 'dns'>;
  pid: number | null;
  ready: boolean;
  startedAt: string | null;
  readyAt: string | null;
  bootMs: number | null;
  /**
   * How the last boot started, when its process was launched (after disks and TAP, before QEMU starts
   * or restores) and launch → ready (ms); `fallback` says why a snapshot was not used.
   */
  boot?:
    | {
        kind: 'cold' | 'snapshot';
        launchedAt: string;
        readyMs: number | null;
        fallback: string | null;
        standby?: boolean | undefined;
      }
    | null
    | undefined;
  measurement: VmMeasurement | null;
  health: VmHealth | null;
  lastExit: { kind: string; reason: string; at: string } | null;
  restartPolicy: 'never' | 'on-failure';
  restarts: number;
  snapshots: Array<Omit<SnapshotRecord, 'dir'>>;
  /** Committed disk revisions (`form commit`), oldest first. */
  revisions: Array<Omit<RevisionRecord, 'file'>>;
  /** While suspended: the image's size, when it was made and how long the save took (ms). */
  suspended?: { bytes: number; at: string; saveMs: number } | null | undefined;
  createdAt: string;
  updatedAt: string;
}
