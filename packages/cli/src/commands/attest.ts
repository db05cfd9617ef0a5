import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerAttest({ program }: CommandContext): void {
  program
    .command('attest')
    .description('Verify that every replica of an instance booted exactly its Formpack (signed, fresh report)')
    .argument('<instance>', 'instance name or id')
    .option('--json', 'print the verdicts as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText(
      'after',
      '\nExit code 0 only when every replica passes.\n\nExamples:\n  $ form attest hello-server\n  $ form attest hello-server --json | jq ".replicas[].ok"',
    )
    .action(lazyAction(() => import('../actions/attest.ts'), 'attest'));
}
