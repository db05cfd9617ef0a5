import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerAttest({ program }: CommandContext): void {
  program
    .command('attest')
    .description('Verify that every replica of an instance booted exactly its Formpack (signed, fresh report)')
    .argument('<instance>', 'instance name or id')
    .option('--json', 'print the verdicts as JSON')
    .option('--node <url>', 'node to ask')
    .option(
      '--measurement <sha256>',
      'the expected measurement, from `form pack inspect <id> --local --measurement` where the Formpack was built',
    )
    .option(
      '--https <host>',
      'also connect to https://<host>/ and check that the served certificate key is an attested replica’s (Formfile HTTPS)',
    )
    .option('--resolve <address>', 'with --https: connect to this address[:port] instead of resolving the host')
    .option('--cacert <file>', 'with --https: trust this CA for the chain (a test CA such as Pebble)')
    .option(
      '--trust-node-measurement',
      'with no local build and no --measurement, accept the expected measurement the node itself serves',
    )
    .addHelpText(
      'after',
      '\nThe expected measurement is this machine’s build of the Formpack, or the one you pin with --measurement.\n' +
        'Without either it would come from the node being attested, which could lie: then the verdict is\n' +
        '"measurement from the node (unverified)" and the exit code 1 unless you pass --trust-node-measurement.\n' +
        'Exit code 0 only when every replica passes.\n\nExamples:\n  $ form attest hello-server\n' +
        '  $ form pack inspect 42f369fb12ec --local --measurement --json | jq -r .digest   # where it was built\n' +
        '  $ form attest hello-server --measurement <that digest>\n' +
        '  $ form attest hello-server --json | jq ".replicas[].ok"\n' +
        '  $ form attest hello-server --https hello.dev.formation.net   # the served TLS key is the guest’s',
    )
    .action(lazyAction(() => import('../actions/attest.ts'), 'attest'));
}
