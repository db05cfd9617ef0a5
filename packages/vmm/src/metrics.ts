import { readFileSync } from 'node:fs';
import type { DiskIo, NetIo, Resources, VmSample } from '@formation/interface';
import type { VmView } from './types.ts';

export type { VmSample } from '@formation/interface';

/** Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ: 100 on every Linux we run on). */
const CLK_TCK = 100;

/** CPU seconds and RSS of a process from /proc (null when it is gone). */
export function processStats(pid: number): { cpuSeconds: number; rssBytes: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return { cpuSeconds: (utime + stime) / CLK_TCK, rssBytes: rss ? Number(rss[1]) * 1024 : 0 };
  } catch {
    return null;
  }
}

/** Sample a VM now (its process's counters when it has one). */
export function sampleVm(vm: VmView, logBytes: number | null = null, now = Date.now()): VmSample {
  const p = vm.pid ? processStats(vm.pid) : null;
  return {
    id: vm.id,
    name: vm.name,
    owner: vm.owner,
    state: vm.state,
    at: now,
    cpuSeconds: p?.cpuSeconds ?? null,
    rssBytes: p?.rssBytes ?? null,
    vcpu: vm.resources.vcpu,
    memMiB: vm.resources.memMiB,
    diskGiB: vm.resources.diskGiB,
    uptimeSeconds: p && vm.startedAt ? Math.max(0, Math.round((now - Date.parse(vm.startedAt)) / 1000)) : null,
    restarts: vm.restarts,
    logBytes,
  };
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/**
 * Prometheus text exposition (format 0.0.4) of VM samples and, when given, the node's capacity and use.
 * Pure.
 *
 * @example
 * renderPrometheus([sampleVm(vm)], { capacity, used });
 * // # TYPE formation_vm_cpu_seconds_total counter
 * // formation_vm_cpu_seconds_total{vm="a1b2",name="web-1"} 12.5 …
 */
export function renderPrometheus(
  samples: readonly VmSample[],
  node?: { capacity: Resources; used: Resources; gpus?: { capacity: number; used: number } | undefined },
): string {
  const out: string[] = [];
  const family = (
    name: string,
    type: 'counter' | 'gauge',
    help: string,
    value: (s: VmSample) => number | null,
  ): void => {
    const rows = samples.flatMap((s) => {
      const v = value(s);
      return v === null || !Number.isFinite(v) ? [] : [`${name}{vm="${esc(s.id)}",name="${esc(s.name)}"} ${v}`];
    });
    if (rows.length === 0) return;
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...rows);
  };
  family('formation_vm_up', 'gauge', 'VM state is running (1) or not (0).', (s) => (s.state === 'running' ? 1 : 0));
  family(
    'formation_vm_cpu_seconds_total',
    'counter',
    'CPU time of the VM hypervisor process, seconds.',
    (s) => s.cpuSeconds,
  );
  family('formation_vm_memory_rss_bytes', 'gauge', 'Resident memory of the VM hypervisor process.', (s) => s.rssBytes);
  family('formation_vm_vcpus', 'gauge', 'vCPUs given to the VM.', (s) => s.vcpu);
  family('formation_vm_memory_limit_bytes', 'gauge', 'Guest RAM given to the VM.', (s) => s.memMiB * 1024 * 1024);
  family('formation_vm_uptime_seconds', 'gauge', 'Seconds since the VM last started.', (s) => s.uptimeSeconds);
  family('formation_vm_restarts_total', 'counter', 'Restarts of the VM by policy.', (s) => s.restarts);
  family('formation_vm_log_bytes', 'gauge', 'Bytes of the VM logs kept on the node.', (s) => s.logBytes);
  family(
    'formation_vm_disk_allocated_bytes',
    'gauge',
    'Host disk space the VM qcow2 overlay and data disk occupy.',
    (s) => s.diskAllocatedBytes ?? null,
  );
  const perDisk = (name: string, help: string, value: (d: DiskIo) => number): void => {
    const rows = samples.flatMap((s) =>
      (s.disks ?? []).map((d) => `${name}{vm="${esc(s.id)}",name="${esc(s.name)}",disk="${esc(d.disk)}"} ${value(d)}`),
    );
    if (rows.length) out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, ...rows);
  };
  perDisk('formation_vm_disk_read_bytes_total', 'Bytes the guest read from the virtual disk.', (d) => d.readBytes);
  perDisk('formation_vm_disk_written_bytes_total', 'Bytes the guest wrote to the virtual disk.', (d) => d.writtenBytes);
  perDisk('formation_vm_disk_reads_total', 'Read requests of the guest on the virtual disk.', (d) => d.readOps);
  perDisk('formation_vm_disk_writes_total', 'Write requests of the guest on the virtual disk.', (d) => d.writeOps);
  const net = (name: string, help: string, value: (n: NetIo) => number): void =>
    family(name, 'counter', help, (s) => (s.net ? value(s.net) : null));
  net('formation_vm_network_receive_bytes_total', 'Bytes the guest received (its TAP sent).', (n) => n.rxBytes);
  net('formation_vm_network_transmit_bytes_total', 'Bytes the guest sent (its TAP received).', (n) => n.txBytes);
  net('formation_vm_network_receive_packets_total', 'Packets the guest received.', (n) => n.rxPackets);
  net('formation_vm_network_transmit_packets_total', 'Packets the guest sent.', (n) => n.txPackets);
  net(
    'formation_vm_network_dropped_packets_total',
    'Packets dropped on the VM TAP (both ways).',
    (n) => n.rxDropped + n.txDropped,
  );
  if (node) {
    for (const [k, unit] of [
      ['vcpu', 'vCPUs'],
      ['memMiB', 'MiB of memory'],
      ['diskGiB', 'GiB of disk'],
    ] as const) {
      const metric = `formation_node_${k === 'vcpu' ? 'vcpus' : k === 'memMiB' ? 'memory_mib' : 'disk_gib'}`;
      out.push(
        `# HELP ${metric} Node capacity and what VMs hold, in ${unit}.`,
        `# TYPE ${metric} gauge`,
        `${metric}{kind="capacity"} ${node.capacity[k]}`,
        `${metric}{kind="used"} ${node.used[k]}`,
      );
    }
    if (node.gpus) {
      out.push(
        '# HELP formation_node_gpus GPUs of the node that can be passed through to a VM, and those given to VMs.',
        '# TYPE formation_node_gpus gauge',
        `formation_node_gpus{kind="capacity"} ${node.gpus.capacity}`,
        `formation_node_gpus{kind="used"} ${node.gpus.used}`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}
