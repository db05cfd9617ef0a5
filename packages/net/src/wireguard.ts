import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { inNetns, run, tryRun } from './exec.ts';

/** Where wireguard-go puts its UAPI socket. NOT per network namespace: interface names must be unique host-wide. */
export const WG_RUN_DIR = '/var/run/wireguard';

/** A WireGuard peer as configured on an interface. */
export interface WgPeer {
  /** base64 x25519 public key */
  publicKey: string;
  /** `host:port`; absent for peers that dial in (developers behind NAT). */
  endpoint?: string | undefined;
  /** CIDRs routed to this peer, e.g. `10.128.3.4/32`, `10.129.2.0/24`. */
  allowedIps: string[];
  /** Seconds; 0 or absent disables. */
  persistentKeepalive?: number | undefined;
}

/** A peer as `wg show <if> dump` reports it. */
export interface WgPeerStatus extends WgPeer {
  /** Unix seconds of the last handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
}

export interface WgInterfaceStatus {
  publicKey: string;
  listenPort: number;
  peers: WgPeerStatus[];
}

/** Parse `wg show <if> dump` (tab separated; first line is the interface). */
export function parseWgDump(text: string): WgInterfaceStatus {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const head = lines[0]?.split('\t');
  if (!head || head.length < 4) throw new FormError('NET_ERROR', 'Cannot parse `wg show dump`: no interface line');
  const peers = lines.slice(1).map((line): WgPeerStatus => {
    const f = line.split('\t');
    const [pub, , endpoint, allowed, hs, rx, tx, ka] = f;
    return {
      publicKey: pub as string,
      endpoint: endpoint && endpoint !== '(none)' ? endpoint : undefined,
      allowedIps: allowed && allowed !== '(none)' ? allowed.split(',').filter(Boolean) : [],
      latestHandshake: Number(hs) || 0,
      rxBytes: Number(rx) || 0,
      txBytes: Number(tx) || 0,
      persistentKeepalive: ka && ka !== 'off' ? Number(ka) : undefined,
    };
  });
  return { publicKey: head[1] as string, listenPort: Number(head[2]) || 0, peers };
}

/** `wg set` arguments that make the interface's entry for `p` exactly `p` (allowed-ips replace the old list). */
export function peerSetArgs(p: WgPeer): string[] {
  const args = ['peer', p.publicKey];
  if (p.endpoint) args.push('endpoint', p.endpoint);
  args.push('allowed-ips', p.allowedIps.join(','));
  args.push('persistent-keepalive', p.persistentKeepalive ? String(p.persistentKeepalive) : 'off');
  return args;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** True when `s` is a base64 WireGuard key. */
export function isWgKey(s: string): boolean {
  return KEY_RE.test(s);
}

export interface WireGuardOptions {
  /** Interface name, ≤ 15 chars, unique on the host (the UAPI socket is shared by all namespaces). */
  name: string;
  netns?: string | undefined;
  /** base64 private key. */
  privateKey: string;
  listenPort?: number | undefined;
  /** Addresses with prefix, e.g. `10.128.0.5/32`. */
  addresses: string[];
  mtu?: number;
  /** 'auto' (default): kernel when `ip link add … type wireguard` works, else wireguard-go. */
  implementation?: 'auto' | 'kernel' | 'userspace';
  logger: Logger;
}

/**
 * One WireGuard interface, kernel or wireguard-go, optionally inside a network namespace. Peers are
 * changed live with `wg set` (never by restarting the interface). With wireguard-go we run it in the
 * foreground (`-f`) and own its PID, so `destroy()` ends exactly our process.
 *
 * @example
 * const wg = await WireGuardDevice.create({ name: 'fn1', netns: 'n1', privateKey, listenPort: 51820,
 *   addresses: ['10.128.0.5/32'], logger });
 * await wg.setPeers([{ publicKey, endpoint: '192.168.1.2:51820', allowedIps: ['10.128.0.6/32'] }]);
 */
export class WireGuardDevice {
  readonly name: string;
  readonly netns: string | undefined;
  readonly implementation: 'kernel' | 'userspace';
  private readonly log: Logger;
  private proc: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  private constructor(o: WireGuardOptions, impl: 'kernel' | 'userspace', proc?: ChildProcess) {
    this.name = o.name;
    this.netns = o.netns;
    this.implementation = impl;
    this.log = o.logger.child({ component: 'wireguard', iface: o.name, netns: o.netns });
    this.proc = proc;
    if (proc) {
      this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    }
  }

  /** PID of our wireguard-go process (undefined for kernel WireGuard). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  static async create(o: WireGuardOptions): Promise<WireGuardDevice> {
    if (!IFNAME_RE.test(o.name)) {
      throw new FormError(
        'BAD_REQUEST',
        `Cannot create WireGuard interface ${JSON.stringify(o.name)}: 1-15 of [A-Za-z0-9_.-]`,
      );
    }
    const want = o.implementation ?? 'auto';
    let dev: WireGuardDevice | undefined;
    if (want !== 'userspace') {
      if (await tryRun('ip', ['link', 'add', o.name, 'type', 'wireguard'], { netns: o.netns })) {
        dev = new WireGuardDevice(o, 'kernel');
      } else if (want === 'kernel') {
        throw new FormError(
          'HOST_UNSUPPORTED',
          `Cannot create kernel WireGuard interface ${o.name}: no wireguard module`,
          {
            hint: 'Use implementation "auto" or "userspace" (wireguard-go).',
          },
        );
      }
    }
    if (!dev) dev = await WireGuardDevice.startUserspace(o);
    try {
      await withKeyFile(o.privateKey, (file) =>
        run(
          'wg',
          ['set', o.name, 'private-key', file, ...(o.listenPort ? ['listen-port', String(o.listenPort)] : [])],
          {
            netns: o.netns,
          },
        ),
      );
      for (const a of o.addresses) await run('ip', ['address', 'add', a, 'dev', o.name], { netns: o.netns });
      if (o.mtu) await run('ip', ['link', 'set', o.name, 'mtu', String(o.mtu)], { netns: o.netns });
      await run('ip', ['link', 'set', o.name, 'up'], { netns: o.netns });
    } catch (err) {
      await dev.destroy().catch(() => undefined);
      throw err;
    }
    dev.log.info({ implementation: dev.implementation, pid: dev.pid }, 'WireGuard interface up');
    return dev;
  }

  private static async startUserspace(o: WireGuardOptions): Promise<WireGuardDevice> {
    const sock = `${WG_RUN_DIR}/${o.name}.sock`;
    if (existsSync(sock)) {
      if (await socketAlive(sock)) {
        throw new FormError(
          'CONFLICT',
          `Cannot create WireGuard interface ${o.name}: the name is in use on this host`,
          {
            hint: `${sock} is served by a running wireguard-go (maybe in another network namespace); pick another name.`,
          },
        );
      }
      rmSync(sock, { force: true }); // stale: wireguard-go refuses to start over it
    }
    const [file, argv] = inNetns(o.netns, 'wireguard-go', ['-f', o.name]);
    const proc = spawn(file, argv, {
      env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const dev = new WireGuardDevice(o, 'userspace', proc);
    let failed: Error | undefined;
    proc.once('error', (e) => {
      failed = e;
    });
    const deadline = Date.now() + 5_000;
    while (!existsSync(sock)) {
      if (failed || proc.exitCode !== null || Date.now() > deadline) {
        if (proc.exitCode === null) proc.kill('SIGKILL');
        const why = failed?.message ?? (stderr.trim() || `exit code ${proc.exitCode ?? 'none (timeout)'}`);
        throw new FormError('NET_ERROR', `Cannot start wireguard-go for ${o.name}: ${why}`, {
          hint: 'Is wireguard-go installed (apt-get install wireguard-go) and are we root?',
        });
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    proc.once('exit', (code, signal) => {
      if (!dev.destroying) dev.log.error({ code, signal, stderr: stderr.trim() }, 'wireguard-go exited unexpectedly');
    });
    return dev;
  }

  private destroying = false;

  /** Current interface and peer state (`wg show <if> dump`). */
  async show(): Promise<WgInterfaceStatus> {
    return parseWgDump(await run('wg', ['show', this.name, 'dump'], { netns: this.netns }));
  }

  /** Add or update peers (each becomes exactly as given) and remove others listed in `remove`. One `wg set`. */
  async setPeers(upsert: readonly WgPeer[], remove: readonly string[] = []): Promise<void> {
    if (upsert.length === 0 && remove.length === 0) return;
    const args = ['set', this.name];
    for (const k of remove) args.push('peer', k, 'remove');
    for (const p of upsert) args.push(...peerSetArgs(p));
    await run('wg', args, { netns: this.netns });
  }

  /**
   * Re-set every peer's endpoint to its current value, which drops any source address wireguard-go
   * cached for it. Not needed for a plain address change in our tests (the move test passes without
   * it); offered for underlay changes such as a new default route.
   */
  async refreshEndpoints(): Promise<void> {
    const args = ['set', this.name];
    for (const p of (await this.show()).peers) if (p.endpoint) args.push('peer', p.publicKey, 'endpoint', p.endpoint);
    if (args.length > 2) await run('wg', args, { netns: this.netns });
  }

  async removePeer(publicKey: string): Promise<void> {
    await this.setPeers([], [publicKey]);
  }

  /** Delete the interface; ends our wireguard-go process and removes its socket. */
  async destroy(): Promise<void> {
    this.destroying = true;
    if (this.implementation === 'kernel') {
      await tryRun('ip', ['link', 'del', this.name], { netns: this.netns });
      return;
    }
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3_000).unref());
      if ((await Promise.race([this.exited, timeout])) === 'timeout') {
        proc.kill('SIGKILL');
        await this.exited;
      }
    }
    // wireguard-go removes the tun device and socket on SIGTERM; make sure of both.
    await tryRun('ip', ['link', 'del', this.name], { netns: this.netns });
    rmSync(`${WG_RUN_DIR}/${this.name}.sock`, { force: true });
    this.proc = undefined;
    this.log.info('WireGuard interface removed');
  }
}

/**
 * `wg` reads keys only from files, and Node's child stdin is a socket that /dev/stdin cannot open:
 * hand the key over in a 0600 file inside a fresh 0700 directory, removed right after.
 */
async function withKeyFile<T>(key: string, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'formnet-key-'));
  try {
    const file = join(dir, 'key');
    await writeFile(file, `${key}\n`, { mode: 0o600 });
    return await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
