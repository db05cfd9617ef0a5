import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerFormnet({ noun }: CommandContext): void {
  const formnet = noun('formnet', 'Join the formnet WireGuard mesh permanently from this machine');
  formnet
    .command('up')
    .description('Join (or re-join) formnet: stable key and address, interface formnet0, names resolve (root)')
    .option('--node <url>', 'node to join through (its public address)')
    .option(
      '--interface <name>',
      'WireGuard interface name, unique on this host (default $FORM_FORMNET_INTERFACE or formnet0)',
    )
    .option('--no-resolver', 'do not configure the resolver for the formnet domain')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ sudo form formnet up\n  $ ssh bigdog@hello-server.dev.formation.local\n  $ sudo form formnet up --node https://198.51.100.11',
    )
    .action(lazyAction(() => import('../actions/formnet.ts'), 'formnetUp'));
  formnet
    .command('down')
    .description('Leave formnet: signed leave, interface and wireguard-go removed (the key is kept) (root)')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', '\nExample:\n  $ sudo form formnet down')
    .action(lazyAction(() => import('../actions/formnet.ts'), 'formnetDown'));
  formnet
    .command('status')
    .description('Show the membership: interface, address, peers with their last handshake, domain')
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nExample:\n  $ form formnet status')
    .action(lazyAction(() => import('../actions/formnet.ts'), 'formnetStatus'));
}
