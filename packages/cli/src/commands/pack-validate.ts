import type { CommandContext } from '../program.ts';
import { packDirVerb } from './pack-noun.ts';

export function registerPackValidate(ctx: CommandContext): void {
  packDirVerb(ctx, 'validate', 'Check a Formfile and its build context; every problem is reported with line and column')
    .option('--json', 'print one JSON object: { ok, formfile, errors } (passwords redacted)')
    .addHelpText(
      'after',
      `
Exit status: 0 valid, 1 invalid, 2 usage or I/O error (missing directory, unreadable file).

Examples:
  $ form pack validate                          the Formfile in the current directory
  $ form pack validate examples/hello-server
  $ form pack validate . -f Formfile.dev
  $ form pack validate examples/hello-server --json | jq .formfile`,
    )
    .action(async (dir: string, opts: { file?: string; json?: boolean }) =>
      (await import('../actions/pack-validate.ts')).validateCommand(dir, opts),
    );
}
