import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** TCG translation cache per VM (MiB), passed as `-accel tcg,tb-size=…`; counted in the memory limit. */
export const TCG_TB_MIB = 64;

/**
 * The memory limit of a VM's QEMU (MiB): guest RAM + QEMU's own overhead (128 MiB + a quarter of the
 * guest RAM for page tables, device buffers, I/O) + the TCG translation cache.
 */
export function limitMiB(memMiB: number): number {
  return memMiB + 128 + Math.ceil(memMiB / 4) + TCG_TB_MIB;
}

/** Outcome of applying per-VM limits. */
export interface LimitsResult {
  applied: boolean;
  /** What was set, or why nothing was. */
  detail: string;
}

const ROOT = '/sys/fs/cgroup';

/**
 * Per-VM resource limits through cgroups (best effort): memory = guest RAM + overhead, CPU quota =
 * vCPUs × one core. cgroup v1 (memory + cpu controllers, as on this host) or v2 (unified). Nothing is
 * fatal: a host without writable cgroups runs the VM unlimited and says so.
 */
export function applyLimits(group: string, pid: number, vcpu: number, memMiB: number): LimitsResult {
  const memBytes = limitMiB(memMiB) * 1024 * 1024;
  const quota = vcpu * 100_000;
  try {
    if (existsSync(join(ROOT, 'cgroup.controllers'))) {
      const dir = join(ROOT, group);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'memory.max'), String(memBytes));
      writeFileSync(join(dir, 'cpu.max'), `${quota} 100000`);
      writeFileSync(join(dir, 'cgroup.procs'), String(pid));
      return { applied: true, detail: `cgroup v2 ${group}: memory.max=${memBytes} cpu.max=${quota}/100000` };
    }
    if (!existsSync(join(ROOT, 'memory')) || !existsSync(join(ROOT, 'cpu'))) {
      return { applied: false, detail: 'no memory/cpu cgroup controllers on this host' };
    }
    const mem = join(ROOT, 'memory', group);
    const cpu = join(ROOT, 'cpu', group);
    mkdirSync(mem, { recursive: true });
    mkdirSync(cpu, { recursive: true });
    writeFileSync(join(mem, 'memory.limit_in_bytes'), String(memBytes));
    writeFileSync(join(cpu, 'cpu.cfs_period_us'), '100000');
    writeFileSync(join(cpu, 'cpu.cfs_quota_us'), String(quota));
    writeFileSync(join(mem, 'cgroup.procs'), String(pid));
    writeFileSync(join(cpu, 'cgroup.procs'), String(pid));
    return { applied: true, detail: `cgroup v1 ${group}: memory.limit_in_bytes=${memBytes} cpu.cfs_quota_us=${quota}` };
  } catch (err) {
    return { applied: false, detail: `cgroup limits not applied: ${(err as Error).message}` };
  }
}

/** Remove the VM's cgroups once its process is gone (retries while the exited process is being reaped). */
export async function removeLimits(group: string): Promise<void> {
  const dirs = [join(ROOT, group), join(ROOT, 'memory', group), join(ROOT, 'cpu', group)].filter((d) => existsSync(d));
  for (let i = 0; i < 20 && dirs.length; i++) {
    for (const d of [...dirs]) {
      try {
        rmdirSync(d);
        dirs.splice(dirs.indexOf(d), 1);
      } catch {
        // still populated (zombie not reaped yet)
      }
    }
    if (dirs.length) await new Promise((r) => setTimeout(r, 50));
  }
}
