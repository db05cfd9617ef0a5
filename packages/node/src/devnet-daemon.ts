import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadOrCreateKey } from '@formation/identity';
import { FormError } from '@formation/interface';
import { httpStateClient } from '@formation/state';
import { type NodeInfo, nodePaths } from './config.ts';
import { FORMATIOND_MAIN, pidAlive } from './daemon-files.ts';
import { type DevnetNode, type DevnetState, devnetAdminKey, saveDevnet, stateUrl } from './devnet-state.ts';
import { inNetns, netnsList } from './devnet-world.ts';

// One devnet node's life: its underlay (namespace, veth to the bridge), its formationd started and
// admitted, stopped by PID (and the QEMU a killed one left behind).

const run = promisify(execFile);
const ADMIT = fileURLToPath(new URL('./devnet-admit.ts', import.meta.url));

/** Run a host command (ip, sysctl); a failure is a NET_ERROR that says a devnet needs root. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args);
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new FormError('NET_ERROR', `Cannot run \`${cmd} ${args.join(' ')}\`: ${(e.stderr ?? e.message).trim()}`, {
      hint: 'A devnet needs root (namespaces, veth, WireGuard); `form node doctor` checks the host.',
    });
  }
}

/** Bring the underlay of one node up: namespace + veth to the bridge namespace + its address. */
export async function createUnderlay(s: DevnetState, n: DevnetNode): Promise<void> {
  const have = await netnsList();
  if (!have.includes(n.netns)) await sh('ip', ['netns', 'add', n.netns]);
  await sh('ip', ['-n', n.netns, 'link', 'set', 'lo', 'up']);
  await sh('ip', ['netns', 'exec', n.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  const inNs = await sh('ip', ['-n', n.netns, '-j', 'link', 'show']);
  if ((JSON.parse(inNs) as { ifname: string }[]).some((l) => l.ifname === 'eth0')) return;
  // Created in the root namespace with host-unique names, then moved (creating in place fails with this iproute2).
  const bridgeSide = `${s.prefix}${n.index}b`;
  const temp = `${s.prefix}${n.index}t`;
  await sh('ip', ['link', 'add', bridgeSide, 'type', 'veth', 'peer', 'name', temp]);
  await sh('ip', ['link', 'set', bridgeSide, 'netns', s.bridgeNetns]);
  await sh('ip', ['link', 'set', temp, 'netns', n.netns]);
  await sh('ip', ['-n', n.netns, 'link', 'set', temp, 'name', 'eth0']);
  await sh('ip', ['-n', s.bridgeNetns, 'link', 'set', bridgeSide, 'master', 'dnbr0']);
  await sh('ip', ['-n', s.bridgeNetns, 'link', 'set', bridgeSide, 'up']);
  await sh('ip', ['-n', n.netns, 'address', 'add', `${n.underlayIp}/24`, 'dev', 'eth0']);
  await sh('ip', ['-n', n.netns, 'link', 'set', 'eth0', 'up']);
}

/** The underlay link of a node (its veth end in the bridge namespace): down = partition, up = heal. */
export async function setUnderlayLink(s: DevnetState, node: DevnetNode, up: boolean): Promise<void> {
  await sh('ip', ['-n', s.bridgeNetns, 'link', 'set', `${s.prefix}${node.index}b`, up ? 'up' : 'down']);
}

/** A node's node.json (null until it wrote one). */
export function readInfo(dataDir: string): NodeInfo | null {
  try {
    return JSON.parse(readFileSync(nodePaths(dataDir).infoFile, 'utf8')) as NodeInfo;
  } catch {
    return null;
  }
}

/** Is `pid` the formationd of `dataDir` (not another process that reused the PID)? */
export function isOurDaemon(pid: number, dataDir: string): boolean {
  // formationd sets its process title (so its cmdline no longer shows the data dir): check the title
  // and that this data dir's pid file names this PID.
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!cmd.includes('formationd') && !cmd.includes('main.ts')) return false;
    const recorded = Number.parseInt(readFileSync(nodePaths(dataDir).pidFile, 'utf8').trim(), 10);
    return recorded === pid || cmd.includes(dataDir);
  } catch {
    return false;
  }
}

/** World mode: node 1's libp2p address on its public address (what the others `--join`). */
export function publicMultiaddr(n: DevnetNode): string {
  const ip = n.publicAddress;
  const all = n.info?.p2p ?? [];
  const ma = all.find((a) => a.startsWith(`/ip4/${ip}/`) && a.includes('/p2p/'));
  if (!ma) {
    throw new FormError(
      'UNAVAILABLE',
      `Cannot join ${n.name}: its libp2p does not listen on its public address ${ip} (it lists ${all.join(' ') || 'nothing'})`,
      { hint: 'formationd must listen on --public-address (libp2p, WireGuard, TLS APIs); see its log.' },
    );
  }
  return ma;
}

/** The program and arguments that start a node's formationd: inside its host namespace in world mode. */
function daemonArgv(s: DevnetState, n: DevnetNode): string[] {
  const args = ['--data-dir', n.dataDir, '--netns', n.netns, '--instance-cidr', n.instanceCidr];
  if (s.mode === 'world') {
    const ip = n.publicAddress as string;
    return [
      'ip',
      'netns',
      'exec',
      n.netns,
      process.execPath,
      FORMATIOND_MAIN,
      ...args,
      '--port-offset',
      '0',
      '--public-address',
      ip,
      '--advertise-host',
      ip,
    ];
  }
  return [
    process.execPath,
    FORMATIOND_MAIN,
    ...args,
    '--port-offset',
    String(n.portOffset),
    '--advertise-host',
    n.underlayIp,
  ];
}

/** Admit `n` with the devnet's admin key, at `first` (a running node): from its host namespace in world mode. */
async function admitAt(s: DevnetState, first: DevnetNode, n: DevnetNode, nodeKey: string): Promise<void> {
  if (s.mode === 'world') {
    const adminFile = join(s.dir, 'admin-key.json');
    await devnetAdminKey(s); // made if missing
    await inNetns(first.netns, [process.execPath, ADMIT, stateUrl(first), adminFile, nodeKey, n.instanceCidr]);
    return;
  }
  const admin = await devnetAdminKey(s);
  await httpStateClient(stateUrl(first)).author(admin, 'node.admit', { node: nodeKey, formnetRange: n.instanceCidr });
}

/**
 * Start one devnet node's formationd (the same program and flags as `form node up`), detached, its
 * output in <dataDir>/node/formationd.log, and wait until it publishes node.json as ready. In world
 * mode it runs inside its host namespace (`ip netns exec` execs it: the PID is formationd's).
 */
export async function startDevnetNode(s: DevnetState, n: DevnetNode, timeoutMs = 120_000): Promise<DevnetNode> {
  if (n.pid && pidAlive(n.pid) && isOurDaemon(n.pid, n.dataDir)) return n;
  const paths = nodePaths(n.dataDir);
  mkdirSync(paths.dir, { recursive: true });
  const argv = daemonArgv(s, n);
  // Join through every other node that is up (node 1 at first; a restarted node joins whoever runs).
  const up = s.nodes.filter((o) => o !== n && o.pid && pidAlive(o.pid) && o.info);
  for (const other of up) {
    const ma = s.mode === 'world' ? publicMultiaddr(other) : other.info?.p2p.find((a) => a.includes('/p2p/'));
    if (ma) argv.push('--join', ma);
  }
  const nodeKey = await loadOrCreateKey(paths.keyFile);
  const admin = await devnetAdminKey(s);
  const genesis = up.find((o) => o.info?.genesis)?.info?.genesis;
  if (up.length === 0) {
    // The first node starts the network: the devnet's admin key may admit the others.
    argv.push('--admin', admin.publicKey);
    n.admitted = true; // by its own genesis
  } else {
    // Follow the running nodes' network (no trust on first use), admitted by the devnet's admin.
    if (genesis) argv.push('--genesis', genesis);
    if (!n.admitted) {
      await admitAt(s, up[0] as DevnetNode, n, nodeKey.publicKey);
      n.admitted = true;
      saveDevnet(s);
    }
  }
  const logFd = openSync(paths.logFile, 'a');
  // Local mode: every node on this host's loopback, so peers' APIs are at 127.0.0.1 + their offset.
  // World mode: peers' APIs are at their public addresses (their registered endpoints).
  const env: NodeJS.ProcessEnv = { ...process.env, FORM_PEER_API_HOST: '127.0.0.1', ...s.env };
  if (s.mode === 'world') delete env.FORM_PEER_API_HOST;
  const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: ['ignore', logFd, logFd], env });
  child.unref();
  closeSync(logFd);
  n.pid = child.pid ?? null;
  n.info = undefined;
  saveDevnet(s);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? 1;
  });
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, 200));
    if (exited !== null || !n.pid || !pidAlive(n.pid)) {
      const tail = readFileSync(paths.logFile, 'utf8').trim().split('\n').slice(-10).join('\n');
      throw new FormError('UNAVAILABLE', `Cannot start devnet ${n.name}: formationd exited\n${tail}`, {
        hint: `See ${paths.logFile}`,
      });
    }
    const info = readInfo(n.dataDir);
    if (info?.ready && info.pid === n.pid) {
      n.info = info;
      saveDevnet(s);
      return n;
    }
  }
  throw new FormError('TIMEOUT', `Cannot confirm devnet ${n.name} is up after ${timeoutMs / 1000} s`, {
    hint: `See ${paths.logFile}`,
  });
}

/**
 * Stop one node's formationd by PID: SIGTERM (it stops its VMs and WireGuard), SIGKILL after the
 * timeout; with `crash`, SIGKILL at once. QEMU a killed node leaves behind is killed (by pidfile).
 */
export async function stopDevnetNode(
  s: DevnetState,
  n: DevnetNode,
  timeoutMs = 60_000,
  opts: { crash?: boolean } = {},
): Promise<void> {
  const pid = n.pid;
  if (pid && pidAlive(pid) && isOurDaemon(pid, n.dataDir)) {
    // crash: SIGKILL, as if the machine died (its VMs are killed below too; nothing is reported).
    process.kill(pid, opts.crash ? 'SIGKILL' : 'SIGTERM');
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && pidAlive(pid)) await new Promise((r) => setTimeout(r, 100));
    if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  killLeftoverVms(n.dataDir);
  n.pid = null;
  n.info = undefined;
  saveDevnet(s);
}

/** QEMU processes a killed daemon left behind (from its VM pidfiles), by PID and only if they are ours. */
function killLeftoverVms(dataDir: string): void {
  const vmDir = join(dataDir, 'vms');
  if (!existsSync(vmDir)) return;
  for (const id of readdirSync(vmDir)) {
    for (const f of ['qemu/qemu.pid', 'qemu.pid']) {
      const p = join(vmDir, id, f);
      if (!existsSync(p)) continue;
      const pid = Number.parseInt(readFileSync(p, 'utf8').trim(), 10);
      if (!pid || !pidAlive(pid)) continue;
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(join(vmDir, id))) process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}
