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
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type KeyPair, loadOrCreateKey } from '@formation/identity';
import { FormError } from '@formation/interface';
import { httpStateClient } from '@formation/state';
import { type NodeInfo, nodePaths } from './config.ts';
import { pidAlive } from './daemon-files.ts';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
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

async function netnsList(): Promise<string[]> {
  const out = await sh('ip', ['-j', 'netns', 'list']).catch(() => '[]');
  return (JSON.parse(out || '[]') as { name: string }[]).map((n) => n.name);
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

/**
 * Start one devnet node's formationd (the same program and flags as `form node up`), detached, its
 * output in <dataDir>/node/formationd.log, and wait until it publishes node.json as ready.
 */
export async function startDevnetNode(s: DevnetState, n: DevnetNode, timeoutMs = 120_000): Promise<DevnetNode> {
  if (n.pid && pidAlive(n.pid) && isOurDaemon(n.pid, n.dataDir)) return n;
  const paths = nodePaths(n.dataDir);
  mkdirSync(paths.dir, { recursive: true });
  const args = [
    MAIN,
    '--data-dir',
    n.dataDir,
    '--netns',
    n.netns,
    '--port-offset',
    String(n.portOffset),
    '--advertise-host',
    n.underlayIp,
    '--instance-cidr',
    n.instanceCidr,
  ];
  // Join through every other node that is up (node 1 at first; a restarted node joins whoever runs).
  const up = s.nodes.filter((o) => o !== n && o.pid && pidAlive(o.pid) && o.info);
  for (const other of up) {
    const ma = other.info?.p2p.find((a) => a.includes('/p2p/'));
    if (ma) args.push('--join', ma);
  }
  const nodeKey = await loadOrCreateKey(paths.keyFile);
  const admin = await devnetAdminKey(s);
  const genesis = up.find((o) => o.info?.genesis)?.info?.genesis;
  if (up.length === 0) {
    // The first node starts the network: the devnet's admin key may admit the others.
    args.push('--admin', admin.publicKey);
    n.admitted = true; // by its own genesis
  } else {
    // Follow the running nodes' network (no trust on first use), admitted by the devnet's admin.
    if (genesis) args.push('--genesis', genesis);
    if (!n.admitted) {
      const first = up[0] as DevnetNode;
      await httpStateClient(stateUrl(first)).author(admin, 'node.admit', {
        node: nodeKey.publicKey,
        formnetRange: n.instanceCidr,
      });
      n.admitted = true;
      saveDevnet(s);
    }
  }
  const logFd = openSync(paths.logFile, 'a');
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, FORM_PEER_API_HOST: '127.0.0.1', ...s.env },
  });
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
 * `form devnet up`: a bridge namespace, N node namespaces joined to it by veth (underlay
 * 192.168.77.0/24, nowhere else), and N formationd processes, node 1 first and the others joining it
 * over libp2p; every node advertises its underlay address for WireGuard and owns the instance slice
 * 10.129.<i>.0/24. Returns when every node is ready and sees all N nodes registered.
 */
export async function devnetUp(o: DevnetUpOptions): Promise<DevnetState> {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 16)
    throw new FormError('CLI_USAGE', `Cannot start a devnet of ${o.nodes} nodes: give 1 to 16`);
  const prefix = o.prefix ?? 'fdn';
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix))
    throw new FormError(
      'CLI_USAGE',
      `Cannot use prefix ${prefix}: 1-8 lowercase letters/digits, starting with a letter`,
    );
  if (process.getuid?.() !== 0) {
    throw new FormError('HOST_UNSUPPORTED', 'Cannot start a devnet: namespaces and WireGuard need root', {
      hint: 'Run as root (sudo).',
    });
  }
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true });
  const existing = readDevnet(dir);
  if (existing?.nodes.some((n) => n.pid && pidAlive(n.pid))) {
    throw new FormError('CONFLICT', `Cannot start a devnet in ${dir}: one is already running there`, {
      hint: `Stop it with \`form devnet down --dir ${dir}\`.`,
    });
  }
  const portBase = o.portBase ?? 1000;
  const s: DevnetState = {
    version: 1,
    dir,
    prefix,
    bridgeNetns: `${prefix}br`,
    subnet: `${SUBNET}.0/24`,
    portBase,
    createdAt: new Date().toISOString(),
    env: o.env ?? {},
    nodes: Array.from({ length: o.nodes }, (_, k) => {
      const i = k + 1;
      const portOffset = portBase + k * PORT_STEP;
      return {
        name: `node${i}`,
        index: i,
        netns: `${prefix}${i}`,
        dataDir: join(dir, `node${i}`),
        portOffset,
        underlayIp: `${SUBNET}.${i + 1}`,
        instanceCidr: `10.129.${i}.0/24`,
        pid: null,
        apiBase: 'http://127.0.0.1',
      };
    }),
  };
  // Recorded before anything is made, so `down` can clean up whatever a failed `up` left.
  saveDevnet(s);
  try {
    if (!(await netnsList()).includes(s.bridgeNetns)) {
      await sh('ip', ['netns', 'add', s.bridgeNetns]);
      await sh('ip', ['-n', s.bridgeNetns, 'link', 'add', 'dnbr0', 'type', 'bridge']);
      await sh('ip', ['-n', s.bridgeNetns, 'link', 'set', 'dnbr0', 'up']);
    }
    for (const n of s.nodes) await createUnderlay(s, n);
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

/** Wait until every running node's state lists every node of the devnet. */
export async function waitConverged(s: DevnetState, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const up = s.nodes.filter((n) => n.pid && pidAlive(n.pid));
  while (Date.now() < deadline) {
    const counts = await Promise.all(
      up.map(async (n) => {
        try {
          const r = await fetch(`${stateUrl(n)}/nodes`, { signal: AbortSignal.timeout(3000) });
          const body = (await r.json()) as unknown[] | { nodes: unknown[] };
          return Array.isArray(body) ? body.length : body.nodes.length;
        } catch {
          return 0;
        }
      }),
    );
    if (counts.every((c) => c >= s.nodes.length)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new FormError('TIMEOUT', `Devnet nodes did not all see ${s.nodes.length} nodes within ${timeoutMs / 1000} s`);
}

export function stateUrl(n: DevnetNode): string {
  return `${n.apiBase}:${3004 + n.portOffset}`;
}

export function serviceBase(n: DevnetNode, service: 'formnet' | 'vmm' | 'pack' | 'state'): string {
  const port = { formnet: 3001, vmm: 3002, pack: 3003, state: 3004 }[service];
  return `${n.apiBase}:${port + n.portOffset}`;
}

/** `form devnet down`: stop every node (by PID), kill QEMU left by a crashed node, delete every namespace it made. */
export async function devnetDown(dir: string): Promise<{ stopped: number; namespaces: string[] }> {
  const s = readDevnet(resolve(dir));
  if (!s) return { stopped: 0, namespaces: [] };
  let stopped = 0;
  await Promise.all(
    s.nodes.map(async (n) => {
      if (n.pid && pidAlive(n.pid)) stopped++;
      await stopDevnetNode(s, n).catch(() => undefined);
    }),
  );
  const have = await netnsList();
  const removed: string[] = [];
  for (const ns of [...s.nodes.map((n) => n.netns), s.bridgeNetns]) {
    if (!have.includes(ns)) continue;
    // A WireGuard TUN keeps its wireguard-go alive; deleting the namespace removes the interface and ends it.
    await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
    removed.push(ns);
  }
  // veth ends still in the root namespace (an `up` that failed half-way).
  for (const n of s.nodes) {
    for (const name of [`${s.prefix}${n.index}b`, `${s.prefix}${n.index}t`])
      await run('ip', ['link', 'del', name]).catch(() => undefined);
  }
  s.nodes.forEach((n) => {
    n.pid = null;
    n.info = undefined;
  });
  saveDevnet(s);
  return { stopped, namespaces: removed };
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
          const r = (await (await fetch(`${stateUrl(n)}/digest`, { signal: AbortSignal.timeout(3000) })).json()) as {
            digest: string;
            size: number;
          };
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
        instanceCidr: n.instanceCidr,
        nodeAddress: info?.nodeAddress ?? null,
        formnetAddress: info?.formnetAddress ?? null,
        digest,
        ops,
      };
    }),
  );
}
