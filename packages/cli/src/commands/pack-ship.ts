import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { packDirVerb } from './pack-noun.ts';

export function registerPackShip(ctx: CommandContext): void {
  packDirVerb(ctx, 'ship', 'Deploy the Formpack of a directory as an instance you own (builds it first when needed)')
    .option('--replicas <n>', 'how many replicas (default: 3, or the number of nodes when fewer)')
    .option('--new', 'always create a new instance (default: shipping the same thing again is a no-op)')
    .option('--max-unavailable <n>', 'a rolling update replaces at most n replicas at a time (default 1)')
    .option(
      '--tcp <mapping...>',
      'claim public TCP ports for the instance: <public>[:<guest>] (non-HTTP services; see form port)',
    )
    .option('--node <url>', 'node to ship to')
    .option('--json', 'print { id, name, formpackId, replicas, created } as JSON')
    .addHelpText(
      'after',
      `
Shipping the same Formpack under the same NAME again returns the existing instance; a changed
Formpack with the same NAME updates that instance to it as a new release, rolled out n replicas at a
time (--max-unavailable): each new replica must run (and pass its HEALTHCHECK) before the next old
one is replaced, and a release that fails is rolled back by the nodes (see \`form manage releases\`).

Examples:
  $ form pack ship examples/hello-server
  $ form pack ship . --replicas 2 --json`,
    )
    .action(lazyAction(() => import('../actions/pack-ship.ts'), 'ship'));
}
