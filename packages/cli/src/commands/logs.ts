import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerLogs({ program }: CommandContext): void {
  program
    .command('logs')
    .description("An instance's logs: its entrypoint's output and the guest's service logs, from every replica")
    .argument('<instance>', 'instance id, or name of one of your instances')
    .option('--replica <node>', 'only the replica on this node (node id prefix, name or address)')
    .option('-f, --follow', 'keep printing new lines as they come (Ctrl-C to stop)')
    .option('--since <when>', 'only lines since then: 30s, 10m, 2h, 1d or an ISO time')
    .option('--node <url>', 'node to ask (default: FORM_NODE or your kit config)')
    .option('--json', 'one JSON object per line: { time, node, replica, stream, src, seq, line }')
    .addHelpText(
      'after',
      '\nLines are read from the guest over its agent (never its serial console) and kept on each node\n' +
        '(2 x 4 MiB per VM), so lines from before a restart are still there. Owner only.\n\nExamples:\n' +
        '  $ form logs hello-server\n  $ form logs hello-server -f --since 10m\n' +
        '  $ form logs hello-server --replica node-1a2b3c4d --json',
    )
    .action(lazyAction(() => import('../actions/logs.ts'), 'logs'));
}
