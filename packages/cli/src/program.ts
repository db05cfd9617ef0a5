import { Command, CommanderError } from 'commander';
import { commands } from './commands/index.ts';

/** Build the `form` program: noun-verb commands, each in its own file under commands/. */
export function buildProgram(): Command {
  const program = new Command('form')
    .description('Formation: build, ship and reach confidential VPS instances on a network of untrusted nodes')
    .version('0.1.0', '-V, --version')
    .showHelpAfterError('(run with --help for usage and examples)')
    .exitOverride()
    .addHelpText(
      'after',
      `
Examples:
  $ form kit init --yes                 create your developer key and config
  $ form pack validate examples/hello-server
  $ form pack build examples/hello-server
  $ form pack ship examples/hello-server
  $ form manage get status <instance-id>
  $ form ssh bigdog@hello-server.dev.formation.local`,
    );
  const nouns = new Map<string, Command>();
  const noun = (name: string, description: string): Command => {
    let c = nouns.get(name);
    if (!c) {
      c = program.command(name).description(description);
      nouns.set(name, c);
    }
    return c;
  };
  for (const register of commands) register({ program, noun });
  return program;
}

/** What a command file receives to attach itself. */
export interface CommandContext {
  program: Command;
  /** Get or create the noun (e.g. `pack`), then add verbs to it. */
  noun(name: string, description: string): Command;
}

export { CommanderError };
