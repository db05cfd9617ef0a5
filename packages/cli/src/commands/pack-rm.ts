import { developerKey, serviceUrl } from '../node-client.ts';
import { action, printJson } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { localBuilder, resolveLocalId } from './pack-build.ts';

interface PackRmOptions {
  json?: boolean;
  local?: boolean;
  node?: string;
}

export function registerPackRm({ noun }: CommandContext): void {
  noun('pack', 'Build, check and ship Formpacks')
    .command('rm')
    .description('Delete a Formpack (on the node only its owner may)')
    .argument('<id>', 'Formpack ID (or a unique prefix)')
    .option('--json', 'print { deleted } as JSON')
    .option('--local', 'delete from this machine’s data directory')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExamples:\n  $ form pack rm 5427\n  $ form pack rm 5427ab --local')
    .action(action(packRm));
}

async function packRm(idArg: string, opts: PackRmOptions): Promise<number> {
  let deleted: string;
  if (opts.local) {
    const b = await localBuilder();
    deleted = resolveLocalId(b, idArg);
    b.remove(deleted);
  } else {
    const { PackClient } = await import('@formation/pack');
    deleted = await new PackClient(await serviceUrl('pack', opts.node), await developerKey()).remove(idArg);
  }
  if (opts.json) printJson({ deleted });
  else process.stdout.write(`Deleted Formpack ${deleted}\n`);
  return 0;
}
