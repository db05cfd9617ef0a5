// Net bench: what formnet and p2p cost without the node daemon.
//   net.wg_throughput / net.veth_throughput  iperf3 (5 s, 1 stream) between two namespaces over wireguard-go vs raw veth
//   net.join_ms                              developer join: signed POST /join -> interface up -> first ping reply to a node
//   net.gossip_p50_ms / _p99_ms (N nodes)    op delivery to every node, N in-process libp2p hosts on loopback, real state store
//   net.devnet_up_ms / net.devnet_op_all_nodes_ms (N = 3, 5, 8)  real formationd devnets (see devnet.ts)
//   net.world_up_ms, net.laptop_*           a world devnet: laptop join (form formnet up), HTTP RTT, ssh, upload (world.ts)
// Needs root + wireguard-go + iperf3 for the namespace parts (skipped with a note otherwise).
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { generateKeyPair, generateWireGuardKeyPair } from '@formation/identity';
import {
  bringUpMember,
  connectToBridge,
  createBridgeNetns,
  createFormnetService,
  createNetns,
  deleteNetns,
  desiredPeers,
  type FormnetMember,
  installLeakGuard,
  MemoryFormnetState,
  reconcile,
  requestJoin,
  requestLeave,
  WireGuardDevice,
} from '@formation/net';
import { createP2PNode, type P2PNode } from '@formation/p2p';
import { createLogger } from '@formation/service';
import { openStateStore, type StateStore } from '@formation/state';
import { report } from '../report.ts';
import { devnetBench } from './devnet.ts';
import { worldBench } from './world.ts';

const sh = promisify(execFile);
const logger = createLogger('silent');
const P = `fnb${process.pid % 100000}`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

async function has(bin: string): Promise<boolean> {
  return sh('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
}

async function iperf(serverNs: string, clientNs: string, ip: string): Promise<number> {
  const server = spawn('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1'], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        const { stdout } = await sh('ip', ['netns', 'exec', clientNs, 'iperf3', '-c', ip, '-t', '5', '-J'], {
          maxBuffer: 8 << 20,
        });
        return (JSON.parse(stdout) as { end: { sum_sent: { bits_per_second: number } } }).end.sum_sent.bits_per_second;
      } catch (err) {
        if (!/connect|refused/i.test(String((err as { stdout?: string }).stdout ?? err))) throw err;
      }
    }
    throw new Error('iperf3 server never came up');
  } finally {
    if (server.exitCode === null) server.kill('SIGTERM');
  }
}

async function pingUntil(ns: string, ip: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await sh('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W1', ip]);
      return;
    } catch {
      // handshake not done yet
    }
  }
  throw new Error(`no reply from ${ip}`);
}

async function namespaceBenches(): Promise<void> {
  const missing = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const b of ['wireguard-go', 'wg', 'iperf3']) if (!(await has(b))) missing.push(b);
  if (missing.length) {
    console.error(`net: skipping namespace benches (missing: ${missing.join(', ')})`);
    return;
  }
  const br = `${P}-br`;
  const names = [`${P}-a`, `${P}-b`, `${P}-dev`];
  const devices: WireGuardDevice[] = [];
  const cleanup = async () => {
    for (const d of devices) await d.destroy().catch(() => undefined);
    for (const n of [...names, br]) await deleteNetns(n);
  };
  try {
    await createBridgeNetns(br, 'fbr0');
    for (const [i, ns] of names.entries()) {
      await createNetns(ns);
      await connectToBridge({
        bridgeNetns: br,
        bridge: 'fbr0',
        netns: ns,
        bridgeSide: `${P}b${i}`.slice(-15),
        tempName: `${P}t${i}`.slice(-15),
        address: `192.168.202.${i + 1}/24`,
      });
    }
    // Two nodes with a formnet tunnel between them.
    const state = new MemoryFormnetState();
    const nodes: { key: ReturnType<typeof generateKeyPair>; m: FormnetMember; dev: WireGuardDevice; ns: string }[] = [];
    for (const [i, ns] of names.slice(0, 2).entries()) {
      const key = generateKeyPair();
      const wg = generateWireGuardKeyPair();
      const m = await state.upsertMember({
        id: key.address,
        kind: 'node',
        wgPublicKey: wg.publicKey,
        endpoint: `192.168.202.${i + 1}:51820`,
      });
      const dev = await WireGuardDevice.create({
        name: `${P}w${i}`.slice(-15),
        netns: ns,
        privateKey: wg.privateKey,
        listenPort: 51820,
        addresses: [`${m.address}/32`],
        logger,
      });
      devices.push(dev);
      await installLeakGuard(ns);
      nodes.push({ key, m, dev, ns });
    }
    const reconcileAll = async () => {
      const ms = await state.listMembers();
      for (const n of nodes) await reconcile(n.dev, desiredPeers(n.key.address, ms));
    };
    await reconcileAll();
    const [a, b] = nodes as [(typeof nodes)[number], (typeof nodes)[number]];
    await pingUntil(a.ns, b.m.address);
    const wgBps = await iperf(b.ns, a.ns, b.m.address);
    const vethBps = await iperf(b.ns, a.ns, '192.168.202.2');
    report('net.wg_throughput', wgBps / 1e6, 'Mbit/s', { impl: a.dev.implementation, seconds: 5 });
    report('net.veth_throughput', vethBps / 1e6, 'Mbit/s', {
      ratio_wg_over_veth: Math.round((wgBps / vethBps) * 1000) / 1000,
    });

    // Developer join, library level: the node serves the join API and reconciles on change.
    const api = await createFormnetService({ state, logger, onChange: () => reconcileAll() });
    await api.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;
    const times: number[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const dev = generateKeyPair();
        const wg = generateWireGuardKeyPair();
        const t0 = performance.now();
        const join = await requestJoin(url, dev, { wgPublicKey: wg.publicKey });
        const d = await bringUpMember({
          name: `${P}d${i}`.slice(-15),
          netns: `${P}-dev`,
          privateKey: wg.privateKey,
          join,
          logger,
        });
        devices.push(d);
        await pingUntil(`${P}-dev`, a.m.address);
        times.push(performance.now() - t0);
        await requestLeave(url, dev);
        await d.destroy();
        devices.pop();
      }
    } finally {
      await api.close();
    }
    report('net.join_ms.p50', pct(times, 50), 'ms', {
      runs: times.length,
      max: Math.round(Math.max(...times)),
      target: '<= 2000',
    });
  } finally {
    await cleanup();
  }
}

async function gossipBench(n: number, ops: number): Promise<void> {
  const stores: StateStore[] = [];
  const nodes: P2PNode[] = [];
  const arrivals = new Map<string, number[]>();
  try {
    for (let i = 0; i < n; i++) {
      const store = openStateStore({ path: ':memory:', durability: 'normal' });
      store.onAccepted((op) => {
        const a = arrivals.get(op.hash);
        if (a) a.push(performance.now());
      });
      stores.push(store);
      // Each node bootstraps to up to two earlier ones: a connected graph, not a full mesh.
      const bootstrap = nodes.slice(Math.max(0, i - 2)).flatMap((x) => x.multiaddrs().slice(0, 1));
      nodes.push(
        await createP2PNode({
          key: generateKeyPair(),
          listen: ['/ip4/127.0.0.1/tcp/0'],
          bootstrap,
          store,
          logger,
          syncIntervalMs: 0,
        }),
      );
    }
    await new Promise((r) => setTimeout(r, 2_500)); // subscriptions + a couple of gossipsub heartbeats
    const lat: number[] = [];
    const keys = nodes.map(() => generateKeyPair());
    for (let k = 0; k < ops; k++) {
      const origin = k % n;
      const t0 = performance.now();
      const op = (stores[origin] as StateStore).author(keys[origin]!, 'node.heartbeat', { status: 'healthy' });
      // Remote arrivals come through async gossip validation, so registering after authoring is in time.
      const list: number[] = [];
      arrivals.set(op.hash, list);
      const end = Date.now() + 5_000;
      while (!stores.every((s) => s.has(op.hash)) && Date.now() < end) await new Promise((r) => setImmediate(r));
      if (!stores.every((s) => s.has(op.hash))) throw new Error(`op ${k} did not reach all ${n} nodes in 5 s`);
      lat.push(Math.max(...list) - t0);
      await new Promise((r) => setTimeout(r, 5));
    }
    report(`net.gossip_all_nodes_ms.n${n}.p50`, pct(lat, 50), 'ms', { ops });
    report(`net.gossip_all_nodes_ms.n${n}.p99`, pct(lat, 99), 'ms', { ops, target: n === 8 ? '<= 1000' : undefined });
  } finally {
    await Promise.allSettled(nodes.map((x) => x.stop()));
    for (const s of stores) s.close();
  }
}

// `npm run bench -- net world`: only the world devnet part (the laptop numbers).
const only = process.argv[2];
if (only === 'world') {
  await worldBench();
  process.exit(0);
}
await namespaceBenches();
for (const n of [3, 5, 8]) await gossipBench(n, 100);
if (process.getuid?.() === 0 && (await has('wireguard-go'))) {
  const base = Number(process.env.FORM_BENCH_DEVNET_PORT_BASE ?? 700);
  for (const n of [3, 5, 8]) await devnetBench(n, 30, base);
  if ((await has('qemu-system-x86_64')) && (await has('sshpass'))) await worldBench();
  else process.stdout.write(`${JSON.stringify({ bench: 'net.world', skipped: 'needs QEMU and sshpass' })}\n`);
} else {
  process.stdout.write(`${JSON.stringify({ bench: 'net.devnet', skipped: 'needs root and wireguard-go' })}\n`);
}
