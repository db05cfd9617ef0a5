/**
 * The hypervisor driver interface (Nomad task-driver style): a driver fingerprints the host, declares
 * what it can do here, runs VMs and re-attaches to them after the VMM restarts. The VM manager only
 * talks to this interface; QEMU is the shipped driver, Cloud Hypervisor and Firecracker plug in here
 * (see README). Every driver must pass `runDriverCompliance` from `@formation/vmm/compliance`.
 */

/** What a driver can do on this host, and why not when it cannot. */
export interface DriverFingerprint {
  driver: string;
  /** False when the driver cannot run VMs here at all (binary missing, …); `reason` says why. */
  available: boolean;
  reason?: string;
  /** Hardware acceleration in use: `kvm`, or `tcg` (software emulation) with the reason KVM is not used. */
  accel: 'kvm' | 'tcg' | 'none';
  accelReason?: string;
  version?: string;
  capabilities: {
    pause: boolean;
    snapshot: boolean;
    networkModes: Array<'user' | 'tap'>;
    diskFormats: string[];
    sandbox: boolean;
    cgroupLimits: boolean;
  };
}

/** A TCP port forward for user-mode networking: 127.0.0.1:host -> guest. */
export interface PortForward {
  guest: number;
  host: number;
}

export type DriverNetwork =
  /** `restrict`: QEMU's slirp lets the guest reach nothing outside (host forwards still work). */
  | { mode: 'user'; forwards: PortForward[]; mac: string; restrict?: boolean | undefined }
  | { mode: 'tap'; tap: string; mac: string; netns?: string | undefined };

/** Everything a driver needs to create one VM. JSON-serializable; the manager persists it. */
export interface DriverVmSpec {
  id: string;
  name: string;
  vcpu: number;
  memMiB: number;
  /** Runtime directory owned by this VM (sockets, pidfile, serial log, overlay disk). */
  dir: string;
  kernel: string;
  initramfs?: string | undefined;
  /** Full kernel command line (image cmdline + per-VM vm_* params). */
  cmdline: string;
  /** Base disk image (left untouched: the driver writes to its own overlay). */
  baseDisk: string;
  baseDiskFormat: 'qcow2' | 'raw' | 'vmdk';
  /** Virtual disk size in GiB (the overlay may be grown to this; never shrunk). */
  diskGiB: number;
  /**
   * Size of the second, empty data disk (sparse qcow2 `data.qcow2` next to the overlay, virtio serial
   * `form-data`; the guest encrypts it, see @formation/attest). 0 or absent: no data disk. Not measured.
   */
  dataDiskMiB?: number | undefined;
  network: DriverNetwork;
  agentChannel: string;
  /** GPUs passed through with VFIO (PCI addresses; `gpu.ts`). */
  gpus?: string[] | undefined;
}

/** Driver-side handle: what recover() needs to find the VM again. JSON-serializable. */
export interface DriverVm {
  spec: DriverVmSpec;
  /** Process id of the hypervisor when running. */
  pid?: number | undefined;
  /** Paths inside spec.dir. */
  paths: { disk: string; qmp: string; qga: string; serial: string; pidfile: string; data?: string | undefined };
}

/** Why a hypervisor process ended. */
export interface ExitInfo {
  id: string;
  /** `guest-poweroff`: the guest shut down; `stopped`: we stopped it; `killed`: it vanished on its own. */
  kind: 'guest-poweroff' | 'stopped' | 'killed' | 'crashed';
  reason: string;
}

export interface SnapshotInfo {
  /** Directory holding memory + disk state. */
  dir: string;
  memoryBytes: number;
  diskBytes: number;
  /** Wall time of the save (ms) and guest downtime QEMU reported (ms). */
  totalMs: number;
  downtimeMs?: number | undefined;
}

/** A suspended VM's memory image (suspend-to-disk): what `wake` checks before the VM runs again. */
export interface SuspendInfo {
  file: string;
  bytes: number;
  sha256: string;
  /** Wall time from the suspend call to the process gone (ms). */
  totalMs: number;
}

export interface StopResult {
  /** True when the graceful path timed out and the process was killed. */
  forced: boolean;
  ms: number;
}

/** Access to the guest agent of a running VM. */
export interface GuestAgent {
  ping(timeoutMs?: number): Promise<void>;
  exec(path: string, args: string[], timeoutMs?: number): Promise<{ exitcode: number; stdout: string; stderr: string }>;
  readFile(path: string, maxBytes?: number, timeoutMs?: number): Promise<string>;
  /**
   * Up to `maxBytes` of a guest file from byte `offset` (bytes, not text: a cut may split a character),
   * and the file's current size (so a reader can tell a truncated or replaced file). NOT_FOUND when absent.
   */
  readRange(
    path: string,
    offset: number,
    maxBytes: number,
    timeoutMs?: number,
  ): Promise<{ data: Buffer; size: number }>;
  fsfreeze(freeze: boolean): Promise<number>;
}

export interface HypervisorDriver {
  readonly name: string;
  /** What this driver can do on this host (cached after the first call). */
  fingerprint(): Promise<DriverFingerprint>;
  /** Prepare a VM (runtime dir, overlay disk). No process yet. */
  create(spec: DriverVmSpec): Promise<DriverVm>;
  /** Launch the VM; resolves when the hypervisor runs (not when the guest is ready). */
  start(vm: DriverVm): Promise<void>;
  /** Graceful stop (guest poweroff through the agent, then ACPI), forced after `timeoutMs`. */
  stop(vm: DriverVm, opts?: { timeoutMs?: number; force?: boolean }): Promise<StopResult>;
  /** Stop then start with the same disk. */
  restart(vm: DriverVm, opts?: { timeoutMs?: number }): Promise<void>;
  pause(vm: DriverVm): Promise<void>;
  resume(vm: DriverVm): Promise<void>;
  /** Save memory + a frozen copy of the disk into `dir`. The VM keeps (or returns to) its run state. */
  snapshot(vm: DriverVm, dir: string): Promise<SnapshotInfo>;
  /** Replace the VM's state with a snapshot and run it (kills a running process first). */
  restore(vm: DriverVm, dir: string): Promise<void>;
  /**
   * Suspend to disk: save memory + device state to `file` (0600), then end the hypervisor process. The
   * disk stays in place, untouched until `wake`. On failure the VM keeps running and no file is left.
   */
  suspend(vm: DriverVm, file: string): Promise<SuspendInfo>;
  /**
   * Resume a suspended VM from `file` with the same disk and identity. The image is checked against
   * `expect` (size before launch, sha256 while it streams) and the VM runs only when both match;
   * otherwise VM_IMAGE_INVALID, no process is left and the file is not touched.
   */
  wake(vm: DriverVm, file: string, expect: { bytes: number; sha256: string }): Promise<void>;
  /**
   * Make a VM that has no process (created or stopped) run on `image` next time: a disk another VM of
   * the same base committed (a revision), checked and swapped in for this VM's root disk. The driver
   * owns where and in what form that disk lives (QEMU: a qcow2 overlay re-based onto this VM's base).
   * A refused image (VM_IMAGE_UNSAFE / VM_IMAGE_INVALID) leaves the disk as it was.
   */
  replaceDisk(vm: DriverVm, image: string): Promise<void>;
  /** Stop if needed and remove everything the driver created for this VM. */
  destroy(vm: DriverVm): Promise<void>;
  /**
   * After a VMM restart: find the VM's process again. `running`/`paused` when it lives (and is then
   * watched again), `gone` when there is no such process (any stale pid is verified, never trusted).
   */
  recover(vm: DriverVm): Promise<'running' | 'paused' | 'gone'>;
  /** Current hypervisor-side status. */
  status(vm: DriverVm): Promise<'running' | 'paused' | 'stopped'>;
  /** Block I/O counters of a running VM as the hypervisor reports them (QEMU: `query-blockstats`; `vm-io.ts`). */
  blockStats?(vm: DriverVm): Promise<unknown>;
  /** The guest agent of a running VM. */
  agent(vm: DriverVm): GuestAgent;
  /** Called once per process end the driver did not cause itself through stop/destroy/restore. */
  onExit(listener: (info: ExitInfo) => void): void;
  /** Release watchers and connections; VMs keep running (recover() finds them again). */
  close(): Promise<void>;
}
