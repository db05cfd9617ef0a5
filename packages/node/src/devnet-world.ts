// The devnet's "world": a small internet made of network namespaces, none linked to the root namespace.
//   <p>net   the internet switch (bridge inet0), 198.51.100.0/24 (a documentation range)
//   <p>1…N   node hosts, eth0 198.51.100.(10+i): each runs its formationd inside (standard ports)
//   <p>vis   the visitor, 198.51.100.200: a small HTTP server that plays the public internet
//   <p>rtr   a NAT router: 198.51.100.50 on the internet, 192.168.50.1 on the laptop's LAN (masquerade)
//   <p>lap   the developer's laptop, 192.168.50.2 behind the router (default route via it)
// Pure planning (`worldPlan`) apart from the commands that build and remove it.
import { execFile } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import { pidAlive } from './daemon-files.ts';

const run = promisify(execFile);

export const WORLD_SUBNET = '198.51.100';
export const WORLD_BRIDGE = 'inet0';

export interface WorldHost {
  index: number;
  netns: string;
  /** The node's public address (eth0). */
  ip: string;
}

/** Every namespace and address of a world devnet, derived from the prefix and the node count. */
export interface WorldPlan {
  prefix: string;
  internet: { netns: string; bridge: string; cidr: string };
  hosts: WorldHost[];
  visitor: { netns: string; ip: string; port: number };
  router: { netns: string; publicIp: string; lanIp: string };
  laptop: { netns: string; ip: string; gateway: string };
}

/**
 * The world for `nodes` nodes under `prefix` (pure).
 *
 * @example
 * worldPlan('fdn', 2).hosts[1]; // { index: 2, netns: 'fdn2', ip: '198.51.100.12' }
 */
export function worldPlan(prefix: string, nodes: number): WorldPlan {
  checkPrefix(prefix);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 16)
    throw new FormError('CLI_USAGE', `Cannot start a devnet of ${nodes} nodes: give 1 to 16`);
  return {
    prefix,
    internet: { netns: `${prefix}net`, bridge: WORLD_BRIDGE, cidr: `${WORLD_SUBNET}.0/24` },
    hosts: Array.from({ length: nodes }, (_, k) => ({
      index: k + 1,
      netns: `${prefix}${k + 1}`,
      ip: `${WORLD_SUBNET}.${11 + k}`,
    })),
    visitor: { netns: `${prefix}vis`, ip: `${WORLD_SUBNET}.200`, port: 80 },
    router: { netns: `${prefix}rtr`, publicIp: `${WORLD_SUBNET}.50`, lanIp: '192.168.50.1' },
    laptop: { netns: `${prefix}lap`, ip: '192.168.50.2', gateway: '192.168.50.1' },
  };
}

/** Namespace/interface prefix: 1-8 lowercase letters/digits, starting with a letter (names stay ≤ 15 chars). */
export function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix))
    throw new FormError(
      'CLI_USAGE',
      `Cannot use prefix ${prefix}: 1-8 lowercase letters/digits, starting with a letter`,
      {
        hint: 'Namespaces are named <prefix>net, <prefix>1…, <prefix>lap; interface names must stay under 16 characters.',
      },
    );
}

/** Every namespace of the world, the internet switch last (so hosts unplug before it goes). */
export function worldNamespaces(p: WorldPlan): string[] {
  return [...p.hosts.map((h) => h.netns), p.visitor.netns, p.laptop.netns, p.router.netns, p.internet.netns];
}

/** Temporary veth names in the root namespace (host-unique; renamed or moved away at once). */
export function worldVethNames(p: WorldPlan): string[] {
  const tags = [...p.hosts.map((h) => String(h.index)), 'v', 'r', 'l'];
  return tags.flatMap((t) => [`${p.prefix}${t}b`, `${p.prefix}${t}t`]);
}

async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    return (await run(cmd, args, { maxBuffer: 16 << 20 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new FormError('NET_ERROR', `Cannot run \`${cmd} ${args.join(' ')}\`: ${(e.stderr || e.message).trim()}`, {
      hint: 'A devnet needs root (namespaces, veth, nftables, WireGuard); `form node doctor` checks the host.',
    });
  }
}

export async function netnsList(): Promise<string[]> {
  const out = await run('ip', ['-j', 'netns', 'list']).then(
    (r) => r.stdout,
    () => '[]',
  );
  return (JSON.parse(out || '[]') as { name: string }[]).map((n) => n.name);
}

/**
 * Run `argv` inside namespace `ns` and return its stdout (NET_ERROR with its stderr when it fails).
 * Everything the devnet does "on a host" goes through here: nothing of the world is reachable from the
 * root namespace.
 */
export async function inNetns(
  ns: string,
  argv: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  try {
    return (
      await run('ip', ['netns', 'exec', ns, ...argv], {
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 16 << 20,
        env: opts.env ?? process.env,
      })
    ).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new FormError(
      'NET_ERROR',
      `Cannot run \`${argv.join(' ')}\` in namespace ${ns}: ${(e.stderr || e.message).trim()}`,
    );
  }
}

/** GET `url` from inside namespace `ns` (curl there) and parse the JSON body; throws on non-2xx. */
export async function nsFetchJson<T>(ns: string, url: string, timeoutMs = 3000): Promise<T> {
  const out = await inNetns(ns, ['curl', '-sS', '--fail-with-body', '--max-time', String(timeoutMs / 1000), url], {
    timeoutMs: timeoutMs + 2000,
  });
  return JSON.parse(out) as T;
}

async function ensureNs(ns: string, have: string[]): Promise<void> {
  if (!have.includes(ns)) await sh('ip', ['netns', 'add', ns]);
  await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

async function hasLink(ns: string, name: string): Promise<boolean> {
  const out = await sh('ip', ['-n', ns, '-j', 'link', 'show']);
  return (JSON.parse(out) as { ifname: string }[]).some((l) => l.ifname === name);
}

/**
 * A veth pair between namespaces `a` (named `aName`) and `b` (named `bName`). Created in the root
 * namespace under host-unique temporary names and moved at once (creating it in place fails with this
 * iproute2); nothing stays in the root namespace.
 */
async function vethBetween(tag: string, a: string, aName: string, b: string, bName: string): Promise<void> {
  const ta = `${tag}b`;
  const tb = `${tag}t`;
  await sh('ip', ['link', 'add', ta, 'type', 'veth', 'peer', 'name', tb]);
  await sh('ip', ['link', 'set', ta, 'netns', a]);
  await sh('ip', ['link', 'set', tb, 'netns', b]);
  if (aName !== ta) await sh('ip', ['-n', a, 'link', 'set', ta, 'name', aName]);
  if (bName !== tb) await sh('ip', ['-n', b, 'link', 'set', tb, 'name', bName]);
}

/** Plug namespace `ns` into the internet switch as eth0 with `ip`/24 (idempotent). */
async function plugIn(p: WorldPlan, tag: string, ns: string, ip: string): Promise<void> {
  if (await hasLink(ns, 'eth0')) return;
  const port = `${p.prefix}${tag}b`;
  await vethBetween(`${p.prefix}${tag}`, p.internet.netns, port, ns, 'eth0');
  await sh('ip', ['-n', p.internet.netns, 'link', 'set', port, 'master', p.internet.bridge]);
  await sh('ip', ['-n', p.internet.netns, 'link', 'set', port, 'up']);
  await sh('ip', ['-n', ns, 'address', 'add', `${ip}/24`, 'dev', 'eth0']);
  await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
}

/** The router's masquerade: everything from the LAN leaves with the router's public address. */
export function routerNatRules(p: WorldPlan): string {
  return [
    'table ip formdevnet {',
    ' chain postrouting {',
    '  type nat hook postrouting priority srcnat; policy accept;',
    `  ip saddr ${p.laptop.ip.replace(/\.\d+$/, '.0')}/24 oifname "eth0" masquerade`,
    ' }',
    '}',
    '',
  ].join('\n');
}

/** Build the world (idempotent: an existing namespace or link is kept, so a half-made world completes). */
export async function createWorld(p: WorldPlan): Promise<void> {
  const have = await netnsList();
  for (const ns of worldNamespaces(p)) await ensureNs(ns, have);
  if (!(await hasLink(p.internet.netns, p.internet.bridge))) {
    await sh('ip', ['-n', p.internet.netns, 'link', 'add', p.internet.bridge, 'type', 'bridge']);
  }
  await sh('ip', ['-n', p.internet.netns, 'link', 'set', p.internet.bridge, 'up']);
  for (const h of p.hosts) {
    await plugIn(p, String(h.index), h.netns, h.ip);
    // formationd routes its instances' slice and formnet through this host.
    await sh('ip', ['netns', 'exec', h.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  }
  await plugIn(p, 'v', p.visitor.netns, p.visitor.ip);
  await plugIn(p, 'r', p.router.netns, p.router.publicIp);
  // The laptop's LAN: router lan0 <-> laptop eth0, default route via the router, masquerade out of eth0.
  if (!(await hasLink(p.laptop.netns, 'eth0'))) {
    await vethBetween(`${p.prefix}l`, p.router.netns, 'lan0', p.laptop.netns, 'eth0');
    await sh('ip', ['-n', p.router.netns, 'address', 'add', `${p.router.lanIp}/24`, 'dev', 'lan0']);
    await sh('ip', ['-n', p.router.netns, 'link', 'set', 'lan0', 'up']);
    await sh('ip', ['-n', p.laptop.netns, 'address', 'add', `${p.laptop.ip}/24`, 'dev', 'eth0']);
    await sh('ip', ['-n', p.laptop.netns, 'link', 'set', 'eth0', 'up']);
    await sh('ip', ['-n', p.laptop.netns, 'route', 'add', 'default', 'via', p.laptop.gateway]);
  }
  await sh('ip', ['netns', 'exec', p.router.netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await run('ip', ['netns', 'exec', p.router.netns, 'nft', 'delete', 'table', 'ip', 'formdevnet']).catch(
    () => undefined,
  );
  await new Promise<void>((resolveP, reject) => {
    const child = execFile('ip', ['netns', 'exec', p.router.netns, 'nft', '-f', '-'], (err, _o, stderr) =>
      err
        ? reject(
            new FormError(
              'NET_ERROR',
              `Cannot install the laptop router's NAT (nft): ${stderr.trim() || err.message}`,
              {
                hint: 'The world devnet needs nftables (apt-get install nftables) and a kernel with nf_nat.',
              },
            ),
          )
        : resolveP(),
    );
    child.stdin?.end(routerNatRules(p));
  });
}

/** PIDs of the processes living in namespace `ns` (`ip netns pids`: exact, by namespace, not by name). */
export async function netnsPids(ns: string): Promise<number[]> {
  const out = await run('ip', ['netns', 'pids', ns]).then(
    (r) => r.stdout,
    () => '',
  );
  return out
    .split(/\s+/)
    .map((x) => Number.parseInt(x, 10))
    .filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

/**
 * End every process left in these namespaces (wireguard-go, a laptop's `form` helpers, a visitor server
 * whose PID was lost): SIGTERM, then SIGKILL after `graceMs`. Returns the PIDs it signalled.
 */
export async function killNetnsProcesses(namespaces: string[], graceMs = 2000): Promise<number[]> {
  const have = new Set(await netnsList());
  const pids = (await Promise.all(namespaces.filter((ns) => have.has(ns)).map(netnsPids))).flat();
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && pids.some(pidAlive)) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(pidAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The one of `namespaces` this process runs in, or null (compares the namespace inodes). */
export function ownNetnsAmong(namespaces: string[]): string | null {
  let self: number;
  try {
    self = statSync('/proc/self/ns/net').ino;
  } catch {
    return null;
  }
  for (const ns of namespaces) {
    try {
      if (statSync(join('/var/run/netns', ns)).ino === self) return ns;
    } catch {
      // not there
    }
  }
  return null;
}

/** Delete the namespaces that exist among `namespaces` and the root-namespace veth a failed `up` left. */
export async function deleteNamespaces(namespaces: string[], leftoverVeths: string[]): Promise<string[]> {
  const have = new Set(await netnsList());
  const removed: string[] = [];
  for (const ns of namespaces) {
    if (!have.has(ns)) continue;
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    removed.push(ns);
  }
  // Per-namespace files `ip netns exec` binds over /etc (a laptop's resolv.conf from `form formnet up`):
  // these names are the devnet's, so what is under them goes with it.
  for (const ns of namespaces) rmSync(join('/etc/netns', ns), { recursive: true, force: true });
  for (const name of leftoverVeths) await run('ip', ['link', 'del', name]).catch(() => undefined);
  return removed;
}
