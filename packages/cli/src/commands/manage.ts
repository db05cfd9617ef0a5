import { action, lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerManage({ noun }: CommandContext): void {
  const manage = noun('manage', 'Manage your instances: status, events, list, start, stop, scale, delete');
  manage
    .command('get')
    .description('Get information about an instance')
    .argument('<what>', 'what to get: status, or metrics (CPU %, memory, uptime of each replica)')
    .argument('<instance>', 'instance id, name of one of your instances, or a Formpack id (its instances)')
    .option('--node <url>', 'node to ask (default: FORM_NODE or your kit config)')
    .option('--json', 'print as JSON (an array when a Formpack id names several instances)')
    .option('--replica <node>', 'metrics: only the replica on this node')
    .option(
      '--attest',
      'also attest every replica now (fresh nonce, signed report checked against the Formpack) and show its data disk lock',
    )
    .addHelpText(
      'after',
      '\nWith --attest the exit code is 1 when a replica fails attestation.\n\nExamples:\n' +
        '  $ form manage get status hello-server\n  $ form manage get status hello-server --attest\n' +
        '  $ form manage get status 3f2a9c… --json\n  $ form manage get metrics hello-server',
    )
    .action(lazyAction(() => import('../actions/manage.ts'), 'get'));
  manage
    .command('events')
    .description('What happened to an instance: placed, booted, failed (why), healed elsewhere, committed, scaled…')
    .argument('<instance>', 'instance id, name of one of yours, or a Formpack id')
    .option('--since <when>', 'only events since then: 30s, 10m, 2h, 1d or an ISO time')
    .option('--node <url>', 'node to ask')
    .option('--json', 'print { instance, events: [{ at, time, kind, node, author, actor, op, detail }] }')
    .addHelpText(
      'after',
      "\nTimes are the clocks of the ops' authors (the owner's machine, the nodes).\n\nExamples:\n" +
        '  $ form manage events hello-server\n  $ form manage events hello-server --since 1h --json',
    )
    .action(lazyAction(() => import('../actions/manage.ts'), 'events'));
  manage
    .command('releases')
    .description('Releases of an instance: Formpack, when, who, and how its roll-out went')
    .argument('<instance>', 'instance id or name')
    .option('--node <url>', 'node to ask')
    .option(
      '--json',
      'print { id, name, release, releases: [{ release, formpackId, resources, at, by, result, failure }] }',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  $ form manage releases hello-server\n  $ form manage releases hello-server --json',
    )
    .action(lazyAction(() => import('../actions/releases.ts'), 'releases'));
  manage
    .command('rollback')
    .description('Go back to an earlier release (its Formpack and resources), rolled out like an update')
    .argument('<instance>', 'instance id or name')
    .option('--to <release>', 'the release to restore (default: the newest good one before the current)')
    .option('--max-unavailable <n>', "replace at most n replicas at a time (default: the instance's)")
    .option('--node <url>', 'node to ask')
    .option('--json', 'print { ok, id, release, rollbackOf, formpackId } as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form manage rollback hello-server\n  $ form manage rollback hello-server --to 2',
    )
    .action(lazyAction(() => import('../actions/releases.ts'), 'rollback'));
  manage
    .command('list')
    .description('List your instances with their status')
    .option('--all', 'every instance in the network, not only yours')
    .option('--node <url>', 'node to ask')
    .option('--json', 'print as JSON')
    .action(lazyAction(() => import('../actions/manage.ts'), 'list'));
  for (const [verb, desired, what] of [
    ['start', 'running', 'Start a stopped instance again (its disk is kept)'],
    ['stop', 'stopped', 'Stop an instance; its disk is kept for `form manage start`'],
  ] as const) {
    manage
      .command(verb)
      .description(what)
      .argument('<instance>', 'instance id or name')
      .option('--node <url>', 'node to ask')
      .option('--json', 'print as JSON')
      .action(
        action(async (ref: string, opts: { node?: string; json?: boolean }) =>
          (await import('../actions/manage.ts')).setDesired(ref, desired, opts),
        ),
      );
  }
  manage
    .command('autostop')
    .description('Scale to zero: suspend replicas idle this long (their next connection wakes them), or off')
    .argument('<instance>', 'instance id or name')
    .argument('<idle-time>', 'time without traffic: minutes (15) or 15m, 2h, 1d (1 min to 7 days), or off')
    .option('--node <url>', 'node to ask')
    .option('--json', 'print { ok, id, autostopMinutes, changed } as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form manage autostop hello-server 15\n  $ form manage autostop hello-server 2h\n  $ form manage autostop hello-server off\n' +
        'A Formfile sets it at ship with AUTOSTOP 15m (this command overrides it until a release that says AUTOSTOP).',
    )
    .action(lazyAction(() => import('../actions/autostop.ts'), 'autostop'));
  manage
    .command('scale')
    .description('Change how many replicas an instance has (1-16); nodes start or stop VMs to match')
    .argument('<instance>', 'instance id or name')
    .argument('<replicas>', 'the new replica count')
    .option('--node <url>', 'node to ask')
    .option('--json', 'print { ok, id, replicas, changed } as JSON')
    .addHelpText('after', '\nExamples:\n  $ form manage scale hello-server 3')
    .action(lazyAction(() => import('../actions/manage.ts'), 'scale'));
  manage
    .command('delete')
    .description('Delete one of your instances (its VMs are destroyed on every node)')
    .argument('<instance>', 'instance id or name')
    .option('--node <url>', 'node to ask')
    .option('--json', 'print as JSON')
    .action(lazyAction(() => import('../actions/manage.ts'), 'remove'));
}
