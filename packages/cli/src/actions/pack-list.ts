import type { FormpackManifest } from '@formation/interface';
import pc from 'picocolors';
import { serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { localBuilder } from './pack-build.ts';

interface PackListOptions {
  json?: boolean;
  local?: boolean;
  node?: string;
}

export async function packList(opts: PackListOptions): Promise<number> {
  const list: FormpackManifest[] = opts.local
    ? (await localBuilder()).list()
    : await new (await import('@formation/pack')).PackClient(await serviceUrl('pack', opts.node)).list();
  if (opts.json) {
    printJson(list);
    return 0;
  }
  if (list.length === 0) {
    process.stdout.write('No Formpacks yet. Build one with `form pack build <dir>`.\n');
    return 0;
  }
  const rows = list.map((m) => [
    m.id.slice(0, 12),
    m.name,
    `${(m.artifacts.disk.bytes / 2 ** 20).toFixed(0)} MiB`,
    `${m.resources.vcpu} vCPU/${m.resources.memMiB} MiB/${m.resources.diskGiB} GiB`,
    m.createdAt.replace('T', ' ').slice(0, 19),
    m.owner.length > 14 ? `${m.owner.slice(0, 12)}…` : m.owner,
  ]);
  const head = ['ID', 'NAME', 'IMAGE', 'RESOURCES', 'CREATED', 'OWNER'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${pc.bold(fmt(head))}\n${rows.map(fmt).join('\n')}\n`);
  return 0;
}
