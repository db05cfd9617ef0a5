import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { packVerb } from './pack-noun.ts';

export function registerPackRm(ctx: CommandContext): void {
  packVerb(ctx, 'rm')
    .description('Delete a Formpack (on the node only its owner may)')
    .argument('<id>', 'Formpack ID (or a unique prefix)')
    .option('--json', 'print { deleted } as JSON')
    .option('--local', 'delete from this machine’s data directory')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExamples:\n  $ form pack rm 5427\n  $ form pack rm 5427ab --local')
    .action(lazyAction(() => import('../actions/pack-rm.ts'), 'packRm'));
}
