import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { packDirVerb } from './pack-noun.ts';

export function registerPackBuild(ctx: CommandContext): void {
  packDirVerb(ctx, 'build', 'Build a Formpack (bootable VM image) from a Formfile and its build directory')
    .option('--json', 'print { id, name, manifest } as JSON when done')
    .option('-v, --verbose', 'show the build log (apt, RUN output)')
    .option('--local', 'build on this machine instead of sending it to the node (needs root)')
    .option('--node <url>', 'node to send the build to')
    .addHelpText(
      'after',
      `
Same inputs give the same Formpack ID; building an existing ID returns at once.

Examples:
  $ form pack build examples/hello-server
  $ form pack build . --json | jq -r .id
  $ sudo form pack build examples/hello-server --local --verbose`,
    )
    .action(lazyAction(() => import('../actions/pack-build.ts'), 'packBuild'));
}
