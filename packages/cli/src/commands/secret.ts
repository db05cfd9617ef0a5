import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export const MEASUREMENT_HELP =
  'expected measurement when the Formpack was not built here (`form pack inspect <id> --local --measurement` ' +
  'where it was built); without a local build or this, nothing is sent';

export function registerSecret({ noun }: CommandContext): void {
  noun('secret', 'Secrets sealed to attested instances')
    .command('put')
    .description(
      'Attest every replica, then seal the secret to each passing replica’s guest key; it lands in ' +
        '/run/form/secrets/NAME (0600) inside the guest. Failing replicas never receive it.',
    )
    .argument('<instance>', 'instance name or id')
    .argument('<name>', 'secret name (letters, digits, . _ -)')
    .option('--value-file <file>', 'read the value from a file (default: stdin)')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .option('--measurement <sha256>', MEASUREMENT_HELP)
    .addHelpText(
      'after',
      '\nThe secret lives in guest RAM: put it again after the instance restarts (its key is new each boot).\n' +
        'Refused unless the expected measurement is your own: a local build of the Formpack, or --measurement.\n\n' +
        'Examples:\n  $ printf %s "$DB_PASSWORD" | form secret put hello-server DB_PASSWORD\n' +
        '  $ form secret put hello-server TLS_KEY --value-file key.pem',
    )
    .action(lazyAction(() => import('../actions/secret.ts'), 'secretPut'));
}
