import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { packVerb } from './pack-noun.ts';

export function registerPackInspect(ctx: CommandContext): void {
  packVerb(ctx, 'inspect')
    .description('Show a Formpack’s manifest: resources, boot settings, artifacts and hashes')
    .argument('<id>', 'Formpack ID (or a unique prefix)')
    .option('--json', 'print the manifest as JSON')
    .option('--measurement', 'print the measurement an instance of it must attest to (see `form attest`)')
    .option('--local', 'read this machine’s data directory instead of asking the node')
    .option('--node <url>', 'node to ask')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form pack inspect 5427\n  $ form pack inspect 5427 --json | jq .artifacts.disk',
    )
    .action(lazyAction(() => import('../actions/pack-inspect.ts'), 'packInspect'));
}
