// The VMM's metrics of one VM as served (`GET /vms/:id/metrics`) and read by the CLI and the
// dashboard: one declaration of the wire shape (issue 21).

/** One virtual disk's I/O since QEMU started (QMP `query-blockstats`). */
export interface DiskIo {
  /** `root` (drive d0) or `data` (drive d1), else the QEMU drive id. */
  disk: string;
  readBytes: number;
  writtenBytes: number;
  readOps: number;
  writeOps: number;
  flushOps: number;
}

/** Traffic through the VM's network device, seen from the guest. */
export interface NetIo {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
}

/** One VM's numbers at one moment (`GET /vms/:id/metrics`, and a series set in `GET /metrics`). */
export interface VmSample {
  id: string;
  name: string;
  owner: string | null;
  state: string;
  /** When sampled (ms since the epoch). */
  at: number;
  /** CPU time of the VM's hypervisor process (all vCPU and I/O threads), seconds; null without a process. */
  cpuSeconds: number | null;
  /** Resident memory of that process (guest RAM it touched + the hypervisor's own), bytes. */
  rssBytes: number | null;
  vcpu: number;
  memMiB: number;
  diskGiB: number;
  uptimeSeconds: number | null;
  restarts: number;
  /** Bytes of this VM's logs kept on the node. */
  logBytes: number | null;
  /** Per virtual disk I/O since QEMU started (QMP `query-blockstats`); absent when not sampled. */
  disks?: DiskIo[] | undefined;
  /** Bytes its qcow2 overlay (+ data disk) occupy on the host. */
  diskAllocatedBytes?: number | null | undefined;
  /** Its TAP's traffic, from the guest's side; null in user-mode networking or without a process. */
  net?: NetIo | null | undefined;
}
