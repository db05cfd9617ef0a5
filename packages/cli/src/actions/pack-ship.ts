import { relative } from 'node:path';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { countOption } from '../replica-count.ts';

interface ShipOptions {
  file: string;
  replicas?: string;
  new?: boolean;
  maxUnavailable?: string;
  /** Plain TCP mappings to claim for the instance (`<public>[:<guest>]`, see `form port`). */
  tcp?: string[];
  json?: boolean;
  node?: string;
}

export async function ship(dir: string, opts: ShipOptions): Promise<number> {
  const key = await developerKey();
  const replicas = countOption('--replicas', opts.replicas);
  const maxUnavailable = countOption('--max-unavailable', opts.maxUnavailable);
  const { claimPort, parseMapping } = await import('./port.ts');
  for (const m of opts.tcp ?? []) parseMapping(m); // a bad mapping fails before anything is built
  const { loadSpec, PackClient } = await import('@formation/pack');
  const { httpStateClient, shipFormpack } = await import('@formation/state/client');
  const { spec, dir: absDir } = await loadSpec(
    dir,
    opts.file,
    relative(process.cwd(), `${dir}/${opts.file}`) || opts.file,
  );
  const state = httpStateClient(await serviceUrl('state', opts.node));
  await state.nodes(); // fails early, with the hint to start a node, when none runs
  if (!opts.json) process.stderr.write(`${pc.dim('building')} ${spec.name} …\n`);
  const pack = new PackClient(await serviceUrl('pack', opts.node), key);
  const { id: formpackId, manifest } = await pack.buildAndWait(spec, absDir, { formfile: opts.file });

  const result = await shipFormpack(state, key, manifest, { replicas, new: opts.new, maxUnavailable });
  // TCP ports are claimed for the instance; the nodes grant them (`form port list` shows when).
  const tcp = [];
  for (const m of opts.tcp ?? []) tcp.push(await claimPort(state, key, result.id, m));
  if (opts.json) {
    printJson({
      id: result.id,
      name: spec.name,
      formpackId,
      replicas: result.replicas,
      created: result.created,
      updated: result.updated,
      ...(tcp.length > 0 ? { tcp } : {}),
      ...(result.release ? { release: result.release } : {}),
    });
  } else {
    const what = result.created ? 'Shipped' : result.updated ? 'Updated' : 'Already shipped';
    process.stdout.write(
      `${pc.green('✔')} ${what} ${pc.bold(spec.name)} (Formpack ${formpackId.slice(0, 12)}, ${result.replicas} replica(s))\n`,
    );
    process.stdout.write(`Instance ID: ${result.id}\n`);
    if (result.release)
      process.stdout.write(`Release ${result.release}: rolling out (form manage releases ${spec.name})\n`);
    for (const t of tcp) process.stdout.write(`TCP :${t.port} → guest :${t.target} claimed (form port list)\n`);
    process.stdout.write(`Follow it: form manage get status ${result.id}\n`);
  }
  return 0;
}
