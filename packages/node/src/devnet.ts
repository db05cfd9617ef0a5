import { execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type KeyPair, loadOrCreateKey } from '@formation/identity';
import { FormError } from '@formation/interface';
import { httpStateClient } from '@formation/state';
import { type NodeInfo, nodePaths } from './config.ts';
import { FORMATIOND_MAIN, pidAlive } from './daemon-files.ts';
import {
  checkPrefix,
  createWorld,
  deleteNamespaces,
  inNetns,
  killNetnsProcesses,
  netnsList,
  netnsPids,
  nsFetchJson,
  ownNetnsAmong,
  type WorldPlan,
  worldNamespaces,
  worldPlan,
  worldVethNames,
} from './devnet-world.ts';

export {
  inNetns,
  netnsPids,
  nsFetchJson,
  type WorldHost,
  type WorldPlan,
  worldNamespaces,
  worldPlan,
  worldVethNames,
} from './devnet-world.ts';

const run = promisify(execFile);
const ADMIT = fileURLToPath(new URL('./devnet-admit.ts', import.meta.url));
const VISITOR = fileURLToPath(new URL('./devnet-visitor.ts', import.meta.url));
/** The `form` launcher of this checkout (the laptop's PATH gets a `form` that runs it). */
const FORM_LAUNCHER = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));
const STATE_FILE = 'devnet.json';
const PORT_STEP = 10;

/** One node of a devnet: a real formationd in its own namespace, on the devnet's underlay bridge. */
export interface DevnetNode {
  name: string;
  index: number;
  netns: string;
  dataDir: string;
  portOffset: number;
  /** The node's address on the underlay (only inside the devnet's namespaces). */
  underlayIp: string;
  instanceCidr: string;
  pid: number | null;
  /** Base URL of its APIs (each service on its port + portOffset: formnet 3001, vmm 3002, pack 3003, state 3004). */
  apiBase: string;
  /** From node.json once it is up. */
  info?: NodeInfo | undefined;
  /** An admin's node.admit for this node's key is in the network's state. */
  admitted?: boolean;
  /** World mode: the node's public address (its host namespace's eth0); its APIs are on that host's loopback. */
  publicAddress?: string;
}

/** World mode: the small internet around the nodes (see devnet-world.ts). */
export interface DevnetWorld {
  plan: WorldPlan;
  /** The visitor's HTTP server (in `<p>vis`), by PID. */
  visitorPid: number | null;
  /** One JSON line per request the visitor answered, with the source address (`VisitorRequest`). */
  visitorLog: string;
  /** The laptop's FORM_HOME: its own keys and kit config, nothing shared with the nodes. */
  laptopHome: string;
}

/** What `form devnet up` made, so `status`, `exec` and `down` find it (even after a crash). */
export interface DevnetState {
  version: 1;
  dir: string;
  prefix: string;
  bridgeNetns: string;
  subnet: string;
  portBase: number;
  createdAt: string;
  nodes: DevnetNode[];
  /** Extra environment given to every node (e.g. FORM_HEARTBEAT_MS). */
  env: Record<string, string>;
  /**
   * `local` (the default, and what a state file without it means): formationd in the root namespace,
   * APIs on 127.0.0.1 + port offset. `world`: each formationd inside its host namespace of a small
   * internet (standard ports, reachable only at its public address), with a visitor and a laptop.
   */
  mode?: 'local' | 'world';
  world?: DevnetWorld;
}

export interface DevnetUpOptions {
  nodes: number;
  /** Where the state file and the nodes' data dirs go. */
  dir: string;
  /** Namespace/interface prefix (≤ 8 chars): namespaces `<prefix>br`, `<prefix>1`…`<prefix>N`. */
  prefix?: string;
  /** Port offset of node 1; node i gets portBase + (i-1)*10. */
  portBase?: number;
  /** Environment for every formationd (FORM_HEARTBEAT_MS, FORM_NODE_TIMEOUT_MS, FORM_LOG_LEVEL …). */
  env?: Record<string, string>;
  /** How long each node may take to become ready (ms). */
  timeoutMs?: number;
  /** Build the world (hosts with public addresses, visitor, laptop behind NAT) instead of local mode. */
  world?: boolean;
}

const SUBNET = '192.168.77';

export function devnetStatePath(dir: string): string {
  return join(dir, STATE_FILE);
}

export function readDevnet(dir: string): DevnetState | null {
  const p = devnetStatePath(dir);
  if (!existsSync(p)) return null;
  return JSON.parse(readFileSync(p, 'utf8')) as DevnetState;
}

function saveDevnet(s: DevnetState): void {
  const p = devnetStatePath(s.dir);
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(tmp, p);
}

async function sh(cmd: string, args: string[]): Promise<string> {
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
async function createUnderlay(s: DevnetState, n: DevnetNode): Promise<void> {
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

function readInfo(dataDir: string): NodeInfo | null {
  try {
    return JSON.parse(readFileSync(nodePaths(dataDir).infoFile, 'utf8')) as NodeInfo;
  } catch {
    return null;
  }
}

function isOurDaemon(pid: number, dataDir: string): boolean {
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
 * The devnet's network admin key (`<dir>/admin-key.json`, 0600): written into the genesis by the first
 * node, it admits the others (what an operator does with `form node admit`).
 */
export function devnetAdminKey(s: Pick<DevnetState, 'dir'>): Promise<KeyPair> {
  return loadOrCreateKey(join(s.dir, 'admin-key.json'));
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

/**
 * `form devnet up`. Local mode (the library default): a bridge namespace, N node namespaces joined to
 * it by veth (underlay 192.168.77.0/24, nowhere else), N formationd processes in the root namespace
 * (APIs on 127.0.0.1 + offset), node 1 first and the others joining it over libp2p; every node
 * advertises its underlay address for WireGuard. World mode (`world: true`): the small internet of
 * devnet-world.ts, each formationd inside its host namespace on the standard ports with
 * `--public-address 198.51.100.(10+i)`, a visitor HTTP server and a laptop behind NAT. Either way node i
 * owns the instance slice 10.129.<i>.0/24; returns when every node is ready and sees all N nodes.
 */
export async function devnetUp(o: DevnetUpOptions): Promise<DevnetState> {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 16)
    throw new FormError('CLI_USAGE', `Cannot start a devnet of ${o.nodes} nodes: give 1 to 16`);
  const prefix = o.prefix ?? 'fdn';
  checkPrefix(prefix);
  if (process.getuid?.() !== 0) {
    throw new FormError('HOST_UNSUPPORTED', 'Cannot start a devnet: namespaces and WireGuard need root', {
      hint: 'Run as root (sudo).',
    });
  }
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true });
  const existing = readDevnet(dir);
  if (
    existing?.nodes.some((n) => n.pid && pidAlive(n.pid)) ||
    (existing?.world?.visitorPid && pidAlive(existing.world.visitorPid))
  ) {
    throw new FormError('CONFLICT', `Cannot start a devnet in ${dir}: one is already running there`, {
      hint: `Stop it with \`form devnet down --dir ${dir}\`.`,
    });
  }
  const world = o.world === true;
  const plan = world ? worldPlan(prefix, o.nodes) : null;
  if (plan) {
    // Another devnet (another dir) may use these names: refuse rather than take its namespaces over.
    const taken = (await netnsList()).filter((ns) => worldNamespaces(plan).includes(ns));
    const ours = existing?.world?.plan.prefix === prefix;
    if (taken.length && !ours) {
      throw new FormError(
        'CONFLICT',
        `Cannot start a world devnet with prefix ${prefix}: namespaces ${taken.join(' ')} exist`,
        {
          hint: 'Another devnet uses this prefix: stop it (`form devnet down --dir <its dir>`) or pass --prefix.',
        },
      );
    }
  }
  const portBase = world ? 0 : (o.portBase ?? 1000);
  const s: DevnetState = {
    version: 1,
    dir,
    prefix,
    bridgeNetns: plan ? plan.internet.netns : `${prefix}br`,
    subnet: plan ? plan.internet.cidr : `${SUBNET}.0/24`,
    portBase,
    createdAt: new Date().toISOString(),
    env: o.env ?? {},
    mode: world ? 'world' : 'local',
    nodes: Array.from({ length: o.nodes }, (_, k) => {
      const i = k + 1;
      const publicAddress = plan?.hosts[k]?.ip;
      return {
        name: `node${i}`,
        index: i,
        netns: `${prefix}${i}`,
        dataDir: join(dir, `node${i}`),
        portOffset: world ? 0 : portBase + k * PORT_STEP,
        underlayIp: publicAddress ?? `${SUBNET}.${i + 1}`,
        instanceCidr: `10.129.${i}.0/24`,
        pid: null,
        apiBase: 'http://127.0.0.1',
        ...(publicAddress ? { publicAddress } : {}),
      };
    }),
    ...(plan
      ? {
          world: {
            plan,
            visitorPid: null,
            visitorLog: join(dir, 'visitor', 'requests.log'),
            laptopHome: join(dir, 'laptop'),
          },
        }
      : {}),
  };
  // Recorded before anything is made, so `down` can clean up whatever a failed `up` left.
  saveDevnet(s);
  try {
    if (s.world) {
      await createWorld(s.world.plan);
      await startVisitor(s);
      prepareLaptop(s);
    } else {
      if (!(await netnsList()).includes(s.bridgeNetns)) {
        await sh('ip', ['netns', 'add', s.bridgeNetns]);
        await sh('ip', ['-n', s.bridgeNetns, 'link', 'add', 'dnbr0', 'type', 'bridge']);
        await sh('ip', ['-n', s.bridgeNetns, 'link', 'set', 'dnbr0', 'up']);
      }
      for (const n of s.nodes) await createUnderlay(s, n);
    }
    const [first, ...rest] = s.nodes;
    await startDevnetNode(s, first as DevnetNode, o.timeoutMs);
    await Promise.all(rest.map((n) => startDevnetNode(s, n, o.timeoutMs)));
    await waitConverged(s, o.timeoutMs ?? 120_000);
    return s;
  } catch (err) {
    await devnetDown(dir).catch(() => undefined);
    throw err;
  }
}

/** World mode: the visitor's HTTP server in `<p>vis` (detached; its PID recorded), answering before this returns. */
async function startVisitor(s: DevnetState): Promise<void> {
  const w = s.world as DevnetWorld;
  if (w.visitorPid && pidAlive(w.visitorPid)) return;
  mkdirSync(join(s.dir, 'visitor'), { recursive: true });
  const logFd = openSync(join(s.dir, 'visitor', 'server.log'), 'a');
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      w.plan.visitor.netns,
      process.execPath,
      VISITOR,
      String(w.plan.visitor.port),
      w.visitorLog,
      'hello from the visitor',
    ],
    { detached: true, stdio: ['ignore', logFd, logFd] },
  );
  child.unref();
  closeSync(logFd);
  w.visitorPid = child.pid ?? null;
  saveDevnet(s);
  const url = `http://${w.plan.visitor.ip}:${w.plan.visitor.port}/`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      // From its own namespace (a request from the devnet itself is logged from the visitor's address).
      await inNetns(w.plan.visitor.netns, ['curl', '-sS', '--max-time', '1', '-o', '/dev/null', `${url}ready`]);
      return;
    } catch (err) {
      if (Date.now() > deadline || !w.visitorPid || !pidAlive(w.visitorPid)) {
        throw new FormError('UNAVAILABLE', `Cannot start the devnet visitor: ${(err as Error).message}`, {
          hint: `See ${join(s.dir, 'visitor', 'server.log')}`,
        });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * World mode: the laptop's FORM_HOME (empty: it gets its own key with `form kit init`) and a `form` on
 * its PATH running this checkout's CLI with this Node.
 */
function prepareLaptop(s: DevnetState): void {
  const home = (s.world as DevnetWorld).laptopHome;
  mkdirSync(join(home, 'bin'), { recursive: true, mode: 0o700 });
  const launcher = join(home, 'bin', 'form');
  writeFileSync(launcher, `#!/bin/sh\nexec '${process.execPath}' '${FORM_LAUNCHER}' "$@"\n`, { mode: 0o755 });
}

/** What `form devnet exec <target>` runs in: a node (node1, n1, 1), `laptop`, `visitor`, `router` or `internet`. */
export interface DevnetExecTarget {
  netns: string;
  /** Environment for the command (the laptop's FORM_HOME and PATH). */
  env: Record<string, string>;
  /** Drop the caller's FORM_* variables (FORM_PORT_OFFSET, FORM_NODE …): the laptop shares nothing with this shell. */
  isolated?: boolean;
}

/** The environment `form devnet exec` gives a target's command: the caller's, minus FORM_* for an isolated one. */
export function devnetExecEnv(t: DevnetExecTarget, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base))
    if (!t.isolated || !k.startsWith('FORM_') || k === 'FORM_LOG_LEVEL') env[k] = v;
  return { ...env, ...t.env };
}

/** Resolve an exec target of devnet `s` (pure; CLI_USAGE/NOT_FOUND for a name it does not have). */
export function devnetExecTarget(s: DevnetState, target: string, basePath = process.env.PATH ?? ''): DevnetExecTarget {
  const n = s.nodes.find((x) => x.name === target || String(x.index) === target || `n${x.index}` === target);
  if (n) return { netns: n.netns, env: {} };
  const w = s.world;
  const names = [...s.nodes.map((x) => x.name), ...(w ? ['laptop', 'visitor', 'router', 'internet'] : [])];
  if (w) {
    if (target === 'laptop' || target === 'lap') {
      const nodeDir = dirname(process.execPath);
      return {
        netns: w.plan.laptop.netns,
        isolated: true,
        env: { FORM_HOME: w.laptopHome, PATH: `${join(w.laptopHome, 'bin')}:${nodeDir}:${basePath}` },
      };
    }
    if (target === 'visitor' || target === 'vis') return { netns: w.plan.visitor.netns, env: {} };
    if (target === 'router' || target === 'rtr') return { netns: w.plan.router.netns, env: {} };
    if (target === 'internet' || target === 'net') return { netns: w.plan.internet.netns, env: {} };
  }
  throw new FormError(
    'NOT_FOUND',
    `Cannot exec in ${target}: this devnet has no such namespace (have ${names.join(', ')})`,
    {
      hint:
        s.mode === 'world'
          ? undefined
          : 'laptop, visitor and router exist in world mode only (`form devnet up` without --local).',
    },
  );
}

/** Wait until every running node's state lists every node of the devnet (read inside each host in world mode). */
export async function waitConverged(s: DevnetState, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const up = s.nodes.filter((n) => n.pid && pidAlive(n.pid));
  while (Date.now() < deadline) {
    const counts = await Promise.all(
      up.map(async (n) => {
        try {
          const body = await nodeJson<unknown[] | { nodes: unknown[] }>(s, n, `${stateUrl(n)}/nodes`);
          return Array.isArray(body) ? body.length : body.nodes.length;
        } catch {
          return 0;
        }
      }),
    );
    if (counts.every((c) => c >= s.nodes.length)) return;
    await new Promise((r) => setTimeout(r, s.mode === 'world' ? 500 : 200));
  }
  throw new FormError('TIMEOUT', `Devnet nodes did not all see ${s.nodes.length} nodes within ${timeoutMs / 1000} s`, {
    hint: `See the nodes' logs: ${s.nodes.map((n) => nodePaths(n.dataDir).logFile).join(' ')}`,
  });
}

/** GET a node's API: from the root namespace in local mode, inside the node's host namespace in world mode. */
export async function nodeJson<T>(s: DevnetState, n: DevnetNode, url: string): Promise<T> {
  if (s.mode === 'world') return nsFetchJson<T>(n.netns, url);
  const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!r.ok) throw new FormError('UNAVAILABLE', `Cannot GET ${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

export function stateUrl(n: DevnetNode): string {
  return `${n.apiBase}:${3004 + n.portOffset}`;
}

export function serviceBase(n: DevnetNode, service: 'formnet' | 'vmm' | 'pack' | 'state'): string {
  const port = { formnet: 3001, vmm: 3002, pack: 3003, state: 3004 }[service];
  return `${n.apiBase}:${port + n.portOffset}`;
}

/**
 * `form devnet down`: stop every node (by PID: SIGTERM, it stops its VMs and WireGuard), kill QEMU left
 * by a crashed node, the visitor server (world), then every process still living in one of the
 * devnet's namespaces (wireguard-go, what a laptop started; found by namespace with `ip netns pids`, so
 * PID-exact), and delete every namespace it made. Idempotent, also after a crash or a half-failed `up`.
 */
export async function devnetDown(
  dir: string,
): Promise<{ stopped: number; namespaces: string[]; leftoverProcesses: number }> {
  const s = readDevnet(resolve(dir));
  if (!s) return { stopped: 0, namespaces: [], leftoverProcesses: 0 };
  const namespaces = s.world ? worldNamespaces(s.world.plan) : [...s.nodes.map((n) => n.netns), s.bridgeNetns];
  // Everything in these namespaces is ended below: from inside one, that would include our own shell.
  const inside = ownNetnsAmong(namespaces);
  if (inside) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot stop the devnet from inside its namespace ${inside}: down ends every process there`,
      {
        hint: 'Run `form devnet down` from the host (not through `form devnet exec`).',
      },
    );
  }
  let stopped = 0;
  await Promise.all(
    s.nodes.map(async (n) => {
      if (n.pid && pidAlive(n.pid)) stopped++;
      await stopDevnetNode(s, n).catch(() => undefined);
    }),
  );
  const veths = s.world
    ? worldVethNames(s.world.plan)
    : s.nodes.flatMap((n) => [`${s.prefix}${n.index}b`, `${s.prefix}${n.index}t`]);
  if (s.world?.visitorPid) {
    stopVisitor(s.world.visitorPid);
    s.world.visitorPid = null;
  }
  // Whatever still lives in our namespaces: wireguard-go of a killed daemon, a laptop's WireGuard or
  // `form` processes, a visitor whose PID was lost.
  const leftovers = await killNetnsProcesses(namespaces);
  const removed = await deleteNamespaces(namespaces, veths);
  s.nodes.forEach((n) => {
    n.pid = null;
    n.info = undefined;
  });
  saveDevnet(s);
  return { stopped, namespaces: removed, leftoverProcesses: leftovers.length };
}

function stopVisitor(pid: number): void {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('devnet-visitor')) return;
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** World mode: the visitor and the laptop, beside the nodes' rows of `devnetStatus`. */
export interface DevnetWorldStatus {
  visitor: { netns: string; ip: string; running: boolean; pid: number | null; requests: number };
  laptop: { netns: string; ip: string; formHome: string; processes: number; interfaces: string[] };
}

/** World mode: is the visitor up, how many requests it answered; what runs on the laptop (null for local mode). */
export async function devnetWorldStatus(dir: string): Promise<DevnetWorldStatus | null> {
  const s = readDevnet(resolve(dir));
  const w = s?.world;
  if (!s || !w) return null;
  const vpid = w.visitorPid;
  const running = !!vpid && pidAlive(vpid);
  let interfaces: string[] = [];
  try {
    const links = JSON.parse(await sh('ip', ['-n', w.plan.laptop.netns, '-j', 'link', 'show'])) as { ifname: string }[];
    interfaces = links.map((l) => l.ifname).filter((n) => n !== 'lo');
  } catch {
    // the laptop namespace is gone
  }
  return {
    visitor: {
      netns: w.plan.visitor.netns,
      ip: w.plan.visitor.ip,
      running,
      pid: running ? vpid : null,
      requests: readVisitorLog(s).length,
    },
    laptop: {
      netns: w.plan.laptop.netns,
      ip: w.plan.laptop.ip,
      formHome: w.laptopHome,
      processes: (await netnsPids(w.plan.laptop.netns)).length,
      interfaces,
    },
  };
}

/** World mode: the visitor's request log (who called it, from which address). */
export function readVisitorLog(s: DevnetState): Array<{ from: string; method: string; url: string; ts: string }> {
  const file = s.world?.visitorLog;
  if (!file || !existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { from: string; method: string; url: string; ts: string });
}

export interface DevnetNodeStatus {
  name: string;
  netns: string;
  pid: number | null;
  running: boolean;
  portOffset: number;
  apiBase: string;
  stateUrl: string;
  underlayIp: string;
  /** World mode: the node's public address. */
  publicAddress: string | null;
  instanceCidr: string;
  nodeAddress: string | null;
  formnetAddress: string | null;
  digest: string | null;
  ops: number | null;
}

/** Per node: running?, formnet address, state digest (equal digests = converged). */
export async function devnetStatus(dir: string): Promise<DevnetNodeStatus[] | null> {
  const s = readDevnet(resolve(dir));
  if (!s) return null;
  return Promise.all(
    s.nodes.map(async (n) => {
      const running = !!n.pid && pidAlive(n.pid) && isOurDaemon(n.pid, n.dataDir);
      const info = running ? readInfo(n.dataDir) : null;
      let digest: string | null = null;
      let ops: number | null = null;
      if (running) {
        try {
          const r = await nodeJson<{ digest: string; size: number }>(s, n, `${stateUrl(n)}/digest`);
          digest = r.digest;
          ops = r.size;
        } catch {
          // not answering
        }
      }
      return {
        name: n.name,
        netns: n.netns,
        pid: running ? n.pid : null,
        running,
        portOffset: n.portOffset,
        apiBase: n.apiBase,
        stateUrl: stateUrl(n),
        underlayIp: n.underlayIp,
        publicAddress: n.publicAddress ?? null,
        instanceCidr: n.instanceCidr,
        nodeAddress: info?.nodeAddress ?? null,
        formnetAddress: info?.formnetAddress ?? null,
        digest,
        ops,
      };
    }),
  );
}
