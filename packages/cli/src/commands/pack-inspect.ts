import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerPackInspect({ noun }: CommandContext): void {
  noun('pack', 'Build, check and ship Formpacks')
    .command('inspect')
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
