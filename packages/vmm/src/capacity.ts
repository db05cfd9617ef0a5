import { statfsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { FormError, type Resources } from '@formation/interface';

/** Capacity configuration: explicit numbers, or derived from the host. */
export interface CapacityConfig {
  vcpu?: number | undefined;
  memMiB?: number | undefined;
  diskGiB?: number | undefined;
  /** vCPU overcommit factor over host cores (default 4). */
  vcpuOvercommit?: number | undefined;
  /** Host RAM kept for the host itself (default 1024 MiB). */
  reserveMemMiB?: number | undefined;
}

/**
 * Host capacity for VMs: configured values, else host cores × overcommit vCPUs, host RAM minus the
 * reserve, and the free disk space of the VM directory.
 */
export function hostCapacity(cfg: CapacityConfig, vmDir: string): Resources {
  let diskGiB = cfg.diskGiB;
  if (diskGiB === undefined) {
    const fs = statfsSync(vmDir);
    diskGiB = Math.floor((fs.bavail * fs.bsize) / 2 ** 30);
  }
  return {
    vcpu: cfg.vcpu ?? availableParallelism() * (cfg.vcpuOvercommit ?? 4),
    memMiB: cfg.memMiB ?? Math.max(0, Math.floor(totalmem() / 2 ** 20) - (cfg.reserveMemMiB ?? 1024)),
    diskGiB,
  };
}

/** Sum of resources. */
export function sumResources(list: Resources[]): Resources {
  return list.reduce(
    (a, r) => ({ vcpu: a.vcpu + r.vcpu, memMiB: a.memMiB + r.memMiB, diskGiB: a.diskGiB + r.diskGiB }),
    {
      vcpu: 0,
      memMiB: 0,
      diskGiB: 0,
    },
  );
}

/**
 * Refuse with VM_NO_CAPACITY when `want` does not fit next to `used` within `capacity`; the message
 * names every resource that is short, with the numbers.
 *
 * @example
 * checkCapacity('vm-1', { vcpu: 2, memMiB: 512, diskGiB: 1 }, used, cap);
 */
export function checkCapacity(vmId: string, want: Resources, used: Resources, capacity: Resources): void {
  const short: string[] = [];
  const free = {
    vcpu: capacity.vcpu - used.vcpu,
    memMiB: capacity.memMiB - used.memMiB,
    diskGiB: capacity.diskGiB - used.diskGiB,
  };
  if (want.vcpu > free.vcpu) short.push(`vCPU: needs ${want.vcpu}, ${free.vcpu} free of ${capacity.vcpu}`);
  if (want.memMiB > free.memMiB)
    short.push(`memory: needs ${want.memMiB} MiB, ${free.memMiB} MiB free of ${capacity.memMiB} MiB`);
  if (want.diskGiB > free.diskGiB)
    short.push(`disk: needs ${want.diskGiB} GiB, ${free.diskGiB} GiB free of ${capacity.diskGiB} GiB`);
  if (short.length) {
    throw new FormError('VM_NO_CAPACITY', `Cannot run VM ${vmId}: not enough capacity (${short.join('; ')})`, {
      hint: 'Stop or destroy other VMs, or ask for fewer resources.',
      details: { want, used, capacity, free },
    });
  }
}
