import { type DiskIo, FormError, type NetIo, type VmSample } from '@formation/interface';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { locate } from './logs.ts';
import { resolveInstance } from './manage.ts';

/** A VMM metrics sample (`disks`, `diskAllocatedBytes`, `net` are absent from older nodes). */
type Sample = VmSample;

/** `r/w` MiB over all disks and `rx/tx` KiB, as the table prints them; `-` when not measured. */
export function ioColumns(s: {
  disks?: ReadonlyArray<Pick<DiskIo, 'readBytes' | 'writtenBytes'>> | undefined;
  net?: Pick<NetIo, 'rxBytes' | 'txBytes'> | null | undefined;
}): { disk: string; net: string } {
  const mib = (b: number) => (b / 1048576).toFixed(1);
  const disks = s.disks ?? [];
  const disk = disks.length
    ? `${mib(disks.reduce((n, d) => n + d.readBytes, 0))}/${mib(disks.reduce((n, d) => n + d.writtenBytes, 0))}`
    : '-';
  const net = s.net ? `${Math.round(s.net.rxBytes / 1024)}/${Math.round(s.net.txBytes / 1024)}` : '-';
  return { disk, net };
}

/** CPU use (% of one core) between two samples of the same process; null when it cannot be told. */
export function cpuPercent(a: Sample, b: Sample): number | null {
  if (a.cpuSeconds === null || b.cpuSeconds === null || b.at <= a.at || b.cpuSeconds < a.cpuSeconds) return null;
  return Math.round(((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 1000) / 10;
}

/**
 * `form manage get metrics <instance>`: per replica CPU (% of one core, measured over one second), memory
 * of its VM process, disk I/O (read/written MiB) and network (received/sent KiB), uptime, restarts and log
 * bytes, from each replica node's VMM (`GET /vms/:id/metrics`).
 */
export async function metrics(
  ref: string,
  opts: { node?: string | undefined; replica?: string | undefined; json?: boolean | undefined },
): Promise<number> {
  const key = await developerKey();
  const { httpStateClient } = await import('@formation/state/client');
  const state = httpStateClient(await serviceUrl('state', opts.node));
  const inst = await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : key.address);
  const replicas = await locate(inst, await state.nodes(), opts, key);
  const rows = await Promise.all(
    replicas.map(async (r) => {
      if (!r.vmId) return { replica: r.label, node: r.node, problem: r.problem ?? 'no VM' };
      try {
        const path = `/vms/${r.vmId}/metrics`;
        const a = await r.client.request<Sample>('GET', path);
        await new Promise((ok) => setTimeout(ok, 1000));
        const b = await r.client.request<Sample>('GET', path);
        return { replica: r.label, node: r.node, ...b, cpuPercent: cpuPercent(a, b) };
      } catch (err) {
        return { replica: r.label, node: r.node, problem: (err as Error).message };
      }
    }),
  );
  if (rows.every((r) => 'problem' in r && r.problem)) {
    throw new FormError('NOT_FOUND', `Cannot read the metrics of ${inst.name}: no replica's VM could be reached`, {
      hint: 'Check `form manage get status`, or ask the node that runs it with --node.',
    });
  }
  if (opts.json) {
    printJson({ id: inst.id, name: inst.name, replicas: rows });
    return 0;
  }
  const mib = (b: number | null | undefined) => (b === null || b === undefined ? '-' : `${Math.round(b / 1048576)}`);
  process.stdout.write(`metrics of ${inst.name} (${inst.id})\n`);
  process.stdout.write(
    pc.dim(
      `  ${'replica'.padEnd(16)} ${'state'.padEnd(9)} ${'cpu %'.padStart(6)} ${'rss MiB'.padStart(8)} ${'mem MiB'.padStart(8)} vcpu ${'uptime'.padStart(8)} restarts logs KiB ${'disk r/w MiB'.padStart(13)} ${'net rx/tx KiB'.padStart(14)}\n`,
    ),
  );
  for (const r of rows) {
    if ('problem' in r && r.problem) {
      process.stdout.write(`  ${r.replica.padEnd(16)} ${pc.yellow(`cannot read: ${r.problem}`)}\n`);
      continue;
    }
    const s = r as Sample & { replica: string; cpuPercent: number | null };
    const io = ioColumns(s);
    process.stdout.write(
      `  ${s.replica.padEnd(16)} ${s.state.padEnd(9)} ${String(s.cpuPercent ?? '-').padStart(6)} ${mib(s.rssBytes).padStart(8)} ${String(s.memMiB).padStart(8)} ${String(s.vcpu).padStart(4)} ${`${s.uptimeSeconds ?? '-'}s`.padStart(8)} ${String(s.restarts).padStart(8)} ${String(s.logBytes === null ? '-' : Math.ceil(s.logBytes / 1024)).padStart(8)} ${io.disk.padStart(13)} ${io.net.padStart(14)}\n`,
    );
  }
  return 0;
}
