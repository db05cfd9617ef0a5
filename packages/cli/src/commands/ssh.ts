import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerSsh({ program }: CommandContext): void {
  program
    .command('ssh')
    .description('ssh into an instance over formnet (joins formnet for the session when needed)')
    .argument('<user@host>', 'user from the Formfile USER line; host = instance name, <name>.<domain> or formnet IP')
    .argument('[command...]', 'run this command instead of a shell (put it after --)')
    .option('-i, --identity <file>', 'private key for ssh (else password, as the Formfile USER allows)')
    .option('-p, --port <port>', 'ssh port in the instance', '22')
    .option('--node <url>', 'node to go through')
    .addHelpText(
      'after',
      `
Password logins read the password from the prompt, or from $SSHPASS when set (uses sshpass).
Examples:
  $ form ssh bigdog@hello-server.dev.formation.local
  $ form ssh bigdog@10.129.0.2 -- uptime
  $ SSHPASS=bigdog123 form ssh bigdog@hello-server -- 'cat /app/hello.py'`,
    )
    .action(lazyAction(() => import('../actions/ssh.ts'), 'sshTo'));

  program
    .command('proxy')
    .description('Forward a port on 127.0.0.1 to an instance over formnet (like fly proxy / kubectl port-forward)')
    .argument('<instance>', 'instance name, <name>.<domain> or formnet IP')
    .argument('<ports>', '[local-port:]remote-port')
    .option('--for <seconds>', 'stop after this many seconds (default: until Ctrl-C)')
    .option('--node <url>', 'node to go through')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form proxy hello-server 8080\n  $ form proxy hello-server 18080:8080 --for 60',
    )
    .action(lazyAction(() => import('../actions/ssh.ts'), 'proxy'));
}
