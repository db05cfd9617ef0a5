import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormError } from '@formation/interface';
import { pidAlive } from './daemon-files.ts';
import { createUnderlay, sh, startDevnetNode, stopDevnetNode } from './devnet-daemon.ts';
import {
  type DevnetNode,
  type DevnetState,
  type DevnetUpOptions,
  type DevnetWorld,
  readDevnet,
  saveDevnet,
} from './devnet-state.ts';
import { waitConverged } from './devnet-status.ts';
import {
  checkPrefix,
  createWorld,
  deleteNamespaces,
  inNetns,
  killNetnsProcesses,
  netnsList,
  ownNetnsAmong,
  worldNamespaces,
  worldPlan,
  worldVethNames,
} from './devnet-world.ts';

// The devnet's parts, re-exported where importers found them: the state file and API addresses
// (devnet-state), one node's life (devnet-daemon), exec targets (devnet-exec), status (devnet-status).
export { publicMultiaddr, setUnderlayLink, startDevnetNode, stopDevnetNode } from './devnet-daemon.ts';
export { type DevnetExecTarget, devnetExecEnv, devnetExecTarget } from './devnet-exec.ts';
export {
  type DevnetNode,
  type DevnetState,
  type DevnetUpOptions,
  type DevnetWorld,
  devnetAdminKey,
  devnetStatePath,
  readDevnet,
  serviceBase,
  stateUrl,
} from './devnet-state.ts';
export {
  type DevnetNodeStatus,
  type DevnetWorldStatus,
  devnetStatus,
  devnetWorldStatus,
  nodeJson,
  readVisitorLog,
  waitConverged,
} from './devnet-status.ts';
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

const VISITOR = fileURLToPath(new URL('./devnet-visitor.ts', import.meta.url));
/** The `form` launcher of this checkout (the laptop's PATH gets a `form` that runs it). */
const FORM_LAUNCHER = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));
const PORT_STEP = 10;
const SUBNET = '192.168.77';

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
