import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerPort({ noun }: CommandContext): void {
  const port = noun('port', 'Plain TCP ports for non-HTTP services (a public port on every node → your instance)');
  port
    .command('add')
    .description('Claim a public TCP port for an instance; active once two nodes granted it')
    .argument('<instance>', 'instance name or id')
    .argument('<mapping>', '<public>[:<guest port>], public 1024-65535 and not a node service port')
    .option('--timeout <seconds>', 'how long to wait for the grants', '30')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form port add db 5432\n  $ form port add db 15432:5432')
    .action(lazyAction(() => import('../actions/port.ts'), 'portAdd'));
  port
    .command('list')
    .description('Your TCP port claims, their instance and state (pending, active, taken)')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form port list')
    .action(lazyAction(() => import('../actions/port.ts'), 'portList'));
  port
    .command('rm')
    .description('Release a public TCP port: every node stops listening on it')
    .argument('<port>', 'the public port')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form port rm 5432')
    .action(lazyAction(() => import('../actions/port.ts'), 'portRm'));
}
