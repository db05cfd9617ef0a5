import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerKitInit({ noun }: CommandContext): void {
  noun('kit', 'Your developer kit: key and settings')
    .command('init')
    .description('Create your developer key (secp256k1, never printed, mode 0600) and CLI config')
    .option('-y, --yes', 'take the defaults for every question, ask nothing')
    .option('--force', 'replace an existing key (your old identity is lost)')
    .option(
      '--node <url>',
      'node to talk to (https://<public address> for a node on another machine)',
      'http://127.0.0.1',
    )
    .option('--node-key <key>', 'the node public key its TLS certificate must be bound to (else trusted on first use)')
    .option('--join-formnet', 'join formnet permanently from this machine')
    .option('--no-join-formnet', 'do not join formnet permanently (form ssh joins temporarily)')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ form kit init                      interactive wizard
  $ form kit init --yes                defaults, no questions
  $ form kit init --yes --node https://198.51.100.11 --node-key 03ab…   pin a remote node's key
  $ form kit init --yes --node http://127.0.0.1 --join-formnet`,
    )
    .action(lazyAction(() => import('../actions/kit-init.ts'), 'kitInit'));
}
