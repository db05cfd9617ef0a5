import { relative } from 'node:path';
import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { action, printJson } from '../output.ts';
import type { CommandContext } from '../program.ts';

interface ShipOptions {
  file: string;
  replicas?: string;
  new?: boolean;
  json?: boolean;
  node?: string;
}

export function registerPackShip({ noun }: CommandContext): void {
  noun('pack', 'Build, check and ship Formpacks')
    .command('ship')
    .description('Deploy the Formpack of a directory as an instance you own (builds it first when needed)')
    .argument('[dir]', 'build directory holding the Formfile', '.')
    .option('-f, --file <name>', 'Formfile to read, relative to the build directory', 'Formfile')
    .option('--replicas <n>', 'how many replicas (default: 3, or the number of nodes when fewer)')
    .option('--new', 'always create a new instance (default: shipping the same thing again is a no-op)')
    .option('--node <url>', 'node to ship to')
    .option('--json', 'print { id, name, formpackId, replicas, created } as JSON')
    .addHelpText(
      'after',
      `
Shipping the same Formpack under the same NAME again returns the existing instance; a changed
Formpack with the same NAME updates that instance to it.

Examples:
  $ form pack ship examples/hello-server
  $ form pack ship . --replicas 2 --json`,
    )
    .action(action(ship));
}

async function ship(dir: string, opts: ShipOptions): Promise<number> {
  const key = await developerKey();
  let replicas: number | undefined;
  if (opts.replicas !== undefined) {
    replicas = Number(opts.replicas);
    if (!Number.isInteger(replicas) || replicas < 1 || replicas > 16) {
      throw new FormError('CLI_USAGE', `Cannot use --replicas ${opts.replicas}: give a whole number from 1 to 16`);
    }
  }
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

  const result = await shipFormpack(state, key, manifest, { replicas, new: opts.new });
  if (opts.json) {
    printJson({
      id: result.id,
      name: spec.name,
      formpackId,
      replicas: result.replicas,
      created: result.created,
      updated: result.updated,
    });
  } else {
    const what = result.created ? 'Shipped' : result.updated ? 'Updated' : 'Already shipped';
    process.stdout.write(
      `${pc.green('✔')} ${what} ${pc.bold(spec.name)} (Formpack ${formpackId.slice(0, 12)}, ${result.replicas} replica(s))\n`,
    );
    process.stdout.write(`Instance ID: ${result.id}\n`);
    process.stdout.write(`Follow it: form manage get status ${result.id}\n`);
  }
  return 0;
}
