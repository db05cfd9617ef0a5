import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

export function registerNode({ noun }: CommandContext): void {
  const node = noun('node', 'Run a Formation node on this machine (formationd)');
  node
    .command('up')
    .description('Start formationd in the background; returns when it is healthy')
    .option('--netns <name>', 'keep the node bridge, TAPs and WireGuard inside this network namespace (created on up)')
    .option('--port-offset <n>', 'add N to every port (run several nodes on one host)')
    .option('--join <multiaddr...>', 'join an existing network through these nodes (libp2p multiaddrs)')
    .option('--advertise-host <ip>', 'address other nodes reach this node on (WireGuard, libp2p)')
    .option('--timeout <seconds>', 'how long to wait for the node to be healthy', '120')
    .option('--json', 'print node info as JSON')
    .addHelpText('after', '\nExamples:\n  $ form node up\n  $ form node up --netns formnode0')
    .action(lazyAction(() => import('../actions/node.ts'), 'nodeUp'));
  node
    .command('down')
    .description('Stop formationd and its VMs cleanly')
    .option('--timeout <seconds>', 'wait this long for a clean stop before killing', '90')
    .action(lazyAction(() => import('../actions/node.ts'), 'nodeDown'));
  node
    .command('status')
    .description('Is formationd running, on which ports, where is its log')
    .option('--json', 'print as JSON')
    .action(lazyAction(() => import('../actions/node.ts'), 'nodeStatus'));
  node
    .command('doctor')
    .description('Check this host: KVM or emulation, WireGuard, TUN, ports, disk, programs; with fixes')
    .option('--json', 'print findings as JSON')
    .option('--skip-kvm-probe', 'do not boot the 6 s KVM probe VM')
    .action(lazyAction(() => import('../actions/node.ts'), 'nodeDoctor'));
}
