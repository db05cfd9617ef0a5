import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerWeb({ noun }: CommandContext): void {
  noun('web', 'The web dashboard')
    .command('login')
    .description('Print a one-time link that signs you in to the web dashboard (valid 5 minutes, once)')
    .option('--web <url>', 'dashboard URL (default: FORM_WEB_URL, or the node host on port 3010)')
    .option('--node <url>', 'node whose dashboard to use')
    .option('--read-only', 'the session may only look: no ship, start, stop, delete, commit or build')
    .option('--json', 'print { url, address, expiresAt, canManage, sessionExpiresAt } as JSON')
    .addHelpText(
      'after',
      `
Your developer key signs the request for the link; the key never leaves this machine. Unless you
pass --read-only, it also signs a delegation to a key the dashboard made for this sign-in: until the
session ends (12 hours, or when you sign out) that key may manage your Formpacks and instances —
build, ship, start, stop, delete, commit — and nothing else (no formnet, no secrets, no other
accounts). Whoever runs the dashboard's node could use it within that time: sign in only to a node
you trust, or use --read-only.

Examples:
  $ form web login
  $ form web login --read-only
  $ form web login --web http://127.0.0.1:3010 --json`,
    )
    .action(lazyAction(() => import('../actions/web.ts'), 'login'));
}
