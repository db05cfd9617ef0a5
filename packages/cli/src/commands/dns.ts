import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerDns({ noun }: CommandContext): void {
  const dns = noun('dns', 'Custom domains for your instances (verified by DNS, served by every node)');
  dns
    .command('add')
    .description('Claim a domain for an instance; prints the TXT record that proves you control it')
    .argument('<instance>', 'instance name or id')
    .argument('<domain>', 'a domain you control, e.g. shop.example.com')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form dns add hello shop.example.com')
    .action(lazyAction(() => import('../actions/dns.ts'), 'dnsAdd'));
  dns
    .command('verify')
    .description('Wait until the nodes have seen your proof (TXT _formation.<domain> = token, or a CNAME)')
    .argument('<domain>', 'the claimed domain')
    .option('--timeout <seconds>', 'how long to wait (nodes re-check an unproven claim at most every 60 s)', '120')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form dns verify shop.example.com')
    .action(lazyAction(() => import('../actions/dns.ts'), 'dnsVerify'));
  dns
    .command('list')
    .description('Your custom domains, their instance and state (pending, verified, contested)')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form dns list --json')
    .action(lazyAction(() => import('../actions/dns.ts'), 'dnsList'));
  dns
    .command('rm')
    .description('Release a custom domain: the ingress and public DNS stop serving it')
    .argument('<domain>', 'the domain')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText('after', '\nExample:\n  $ form dns rm shop.example.com')
    .action(lazyAction(() => import('../actions/dns.ts'), 'dnsRm'));
}
