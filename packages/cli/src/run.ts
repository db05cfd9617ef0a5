import { EXIT } from './output.ts';
import { buildProgram } from './program.ts';

/** Parse `argv` and run the command; exit codes as in output.ts. */
export async function run(argv: string[]): Promise<void> {
  const program = buildProgram();
  program.configureOutput({ outputError: (str, write) => write(str) });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
      process.exitCode = EXIT.ok;
    } else if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      process.exitCode = EXIT.error;
    } else {
      throw err;
    }
  }
}
