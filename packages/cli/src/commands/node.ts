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
    .option(
      '--public-address <ip>',
      "this host's public IPv4: libp2p, WireGuard and the TLS APIs (bound to the node key) listen on it",
    )
    .option('--admin <key...>', 'a new network: more admin keys besides this node and your developer key')
    .option('--open', 'a new network: admit every node that registers (no admins)')
    .option('--genesis <hash>', "joining: the network genesis to follow (else the bootstrap node's)")
    .option('--timeout <seconds>', 'how long to wait for the node to be healthy', '120')
    .option('--json', 'print node info as JSON')
    .addHelpText('after', '\nExamples:\n  $ form node up\n  $ form node up --netns formnode0')
    .action(lazyAction(() => import('../actions/node.ts'), 'nodeUp'));
  node
    .command('admit')
    .description('Admit a node to the network (admins only): it gets a formnet slice and may run replicas')
    .argument('<node-key>', "the node's public key (it prints it while it waits for admission)")
    .option('--range <cidr>', 'its formnet slice, a /24 (default: the next free one)')
    .option('--key <file>', 'sign with this admin key file instead of your developer key')
    .option('--node <url>', 'node whose state API to use')
    .option('--json', 'print { node, formnetRange, op } as JSON')
    .addHelpText('after', '\nExamples:\n  $ form node admit 02c3…9a\n  $ form node admit 02c3…9a --range 10.129.7.0/24')
    .action(lazyAction(() => import('../actions/node-admin.ts'), 'nodeAdmit'));
  node
    .command('remove')
    .description('Remove a node from the network (admins only): its replicas are placed elsewhere')
    .argument('<node-key>', "the node's public key")
    .option('--key <file>', 'sign with this admin key file instead of your developer key')
    .option('--node <url>', 'node whose state API to use')
    .option('--json', 'print as JSON')
    .addHelpText('after', '\nExample:\n  $ form node remove 02c3…9a')
    .action(lazyAction(() => import('../actions/node-admin.ts'), 'nodeRemove'));
  node
    .command('list')
    .description("The network's genesis, admission policy and admins, its admitted nodes and those waiting")
    .option('--node <url>', 'node whose state API to use')
    .option('--json', 'print { network, nodes, pending } as JSON')
    .addHelpText('after', '\nExample:\n  $ form node list')
    .action(lazyAction(() => import('../actions/node-admin.ts'), 'nodeList'));
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
