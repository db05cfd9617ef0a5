import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerCommit({ program }: CommandContext): void {
  program
    .command('commit')
    .description('Commit the changes made inside an instance (e.g. over ssh) as a new revision for its replicas')
    .argument('<instance>', 'formnet IP of a replica, instance name or id')
    .option('--node <url>', 'node that runs the replica')
    .option('--json', 'print { instance, revision, sha256, bytes } as JSON')
    .addHelpText('after', '\nExamples:\n  $ form commit 10.129.0.2\n  $ form commit hello-server --json')
    .action(lazyAction(() => import('../actions/commit.ts'), 'commit'));
}
