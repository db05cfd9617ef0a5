import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { packVerb } from './pack-noun.ts';

export function registerPackList(ctx: CommandContext): void {
  packVerb(ctx, 'list')
    .alias('ls')
    .description('List the Formpacks on the node (or on this machine with --local)')
    .option('--json', 'print the manifests as JSON')
    .option('--local', 'read this machine’s data directory instead of asking the node')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExamples:\n  $ form pack list\n  $ form pack list --json | jq -r ".[].id"')
    .action(lazyAction(() => import('../actions/pack-list.ts'), 'packList'));
}
