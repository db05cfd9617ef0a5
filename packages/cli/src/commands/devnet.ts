import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerDevnet({ noun }: CommandContext): void {
  const devnet = noun('devnet', 'Run N real nodes on this machine, each in its own network namespace');
  devnet
    .command('up')
    .description(
      'Start a devnet: a bridge namespace, one namespace + formationd per node, joined over libp2p and formnet',
    )
    .option('--nodes <n>', 'how many nodes', '3')
    .option('--dir <dir>', 'state file and node data dirs (default $FORM_HOME/devnet)')
    .option('--prefix <p>', 'namespace prefix (namespaces <p>br, <p>1..<p>N)', 'fdn')
    .option('--port-base <n>', 'port offset of node 1 (node i: base + 10*(i-1))', '1000')
    .option('--timeout <seconds>', 'how long each node may take to start', '120')
    .option('--json', 'print the nodes as JSON')
    .addHelpText(
      'after',
      '\nExamples:\n  $ form devnet up --nodes 3\n  $ FORM_PORT_OFFSET=1010 form manage list   # talk to node 2',
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
    .description("Run a command inside a node's network namespace (e.g. ping another node over formnet)")
    .argument('<node>', 'node name (node1, n1) or number (1)')
    .argument('<cmd...>', 'command and arguments (after --)')
    .option('--dir <dir>', 'devnet dir')
    .action(lazyAction(() => import('../actions/devnet.ts'), 'exec'));
}
