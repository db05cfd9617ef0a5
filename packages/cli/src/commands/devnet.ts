import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerDevnet({ noun }: CommandContext): void {
  const devnet = noun(
    'devnet',
    'Run N real nodes on this machine: a small internet of namespaces (hosts, a visitor, a laptop behind NAT)',
  );
  devnet
    .command('up')
    .description(
      'Start a devnet: one host namespace + formationd per node on an "internet" bridge (public addresses 198.51.100.11…), a visitor HTTP server and a laptop behind NAT; --local: formationd in this namespace on 127.0.0.1 + port offsets',
    )
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--dir <dir>', 'state file and node data dirs (default $FORM_HOME/devnet)')
    .option(
      '--prefix <p>',
      'namespace prefix (<p>net, <p>1..<p>N, <p>vis, <p>rtr, <p>lap; local: <p>br, <p>1..<p>N)',
      'fdn',
    )
    .option('--local', 'the single-host mode: formationd in this namespace, APIs on 127.0.0.1 + port offsets')
    .option('--port-base <n>', '--local: port offset of node 1 (node i: base + 10*(i-1)); default 1000')
    .option('--timeout <seconds>', 'how long each node may take to start', '120')
    .option('--json', 'print the nodes as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form devnet up --nodes 2\n  $ form devnet exec laptop -- form kit init --node https://198.51.100.11\n  $ form devnet up --local --nodes 3\n  $ FORM_PORT_OFFSET=1010 form manage list   # --local: talk to node 2',
    )
    .action(lazyAction(() => import('../actions/devnet.ts'), 'up'));
  devnet
    .command('down')
    .description('Stop every node (by PID) and remove every namespace and interface the devnet made')
    .option('--dir <dir>', 'devnet dir')
    .action(lazyAction(() => import('../actions/devnet.ts'), 'down'));
  devnet
    .command('status')
    .description('Per node: running, ports, formnet address, state digest')
    .option('--dir <dir>', 'devnet dir')
    .option('--json', 'print as JSON')
    .action(lazyAction(() => import('../actions/devnet.ts'), 'status'));
  devnet
    .command('exec')
    .description(
      "Run a command inside a devnet namespace: a node's host, or (world) the laptop (with its FORM_HOME and `form` on PATH), the visitor, the router",
    )
    .argument('<target>', 'node1 / n1 / 1, laptop, visitor, router, internet')
    .argument('<cmd...>', 'command and arguments (after --)')
    .option('--dir <dir>', 'devnet dir')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form devnet exec laptop -- form kit init --node https://198.51.100.11\n  $ form devnet exec n1 -- ping -c1 10.128.0.2',
    )
    .action(lazyAction(() => import('../actions/devnet.ts'), 'exec'));
}
