import { GUEST_CONTRACT } from '@formation/guest';
import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { MEASUREMENT_HELP } from './secret.ts';

/** Where the guest mounts the data disk (what @formation/attest exports as DATA_MOUNT), for the help text. */
const DATA_MOUNT: string = GUEST_CONTRACT.dataMount;

export function registerDisk({ noun }: CommandContext): void {
  const disk = noun('disk', `The instance's encrypted data disk (${DATA_MOUNT} inside the guest)`);
  disk
    .command('unlock')
    .description(
      'Attest every replica, then seal the instance’s disk key to each passing replica’s guest key; the guest ' +
        `opens its LUKS data disk (formats it the first time) and mounts it on ${DATA_MOUNT}. ` +
        'Failing replicas get nothing.',
    )
    .argument('<instance>', 'instance name or id')
    .option('--json', 'print the result as JSON (with --watch: one line per replica unlocked or refused)')
    .option('--node <url>', 'node to ask')
    .option('--measurement <sha256>', MEASUREMENT_HELP)
    .option(
      '--watch [seconds]',
      'keep running: every interval (default 10 s) attest and unlock replicas whose disk is locked (restarts, healed or new replicas)',
    )
    .addHelpText(
      'after',
      '\nThe key is made once (32 random bytes) and kept only here, in $FORM_HOME/keys/disks/<instance id>.key:\n' +
        'back it up — without it the data cannot be read by anyone. The disk is locked again after every\n' +
        'restart of a replica: run this again, or keep `--watch` running where your key is (this machine\n' +
        'is then the key service: nothing unlocks while it is off).\n\nExamples:\n  $ form disk unlock hello-server\n' +
        '  $ form disk unlock hello-server --watch 30\n  $ form disk status hello-server',
    )
    .action(lazyAction(() => import('../actions/disk.ts'), 'unlock'));
  disk
    .command('status')
    .description('Show whether each replica’s data disk is locked or unlocked')
    .argument('<instance>', 'instance name or id')
    .option('--json', 'print as JSON')
    .option('--node <url>', 'node to ask')
    .action(lazyAction(() => import('../actions/disk.ts'), 'status'));
}
