import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { ActivityCounters } from './activity.ts';
import { type DnsForwarder, type DnsRecords, startDnsForwarder, type Upstream } from './dns-forwarder.ts';
import type { PortForward } from './driver.ts';
import { EgressFirewall } from './egress.ts';

const execFileP = promisify(execFile);

export interface NetworkConfig {
  mode: 'user' | 'tap';
  /** Network namespace the bridge, TAPs and QEMU live in (tap mode). Empty = the host's. */
  netns?: string | undefined;
  /** Create `netns` when missing (and delete it on close). */
  createNetns?: boolean | undefined;
  bridge: string;
  /** Instance range, e.g. 10.129.7.0/24: the bridge gets the first address, VMs the rest. */
  cidr: string;
}

/** Network settings of one VM (persisted in its record). */
export interface VmNetAssignment {
  mode: 'user' | 'tap';
  /** Guest address with prefix, e.g. 10.129.7.2/24. */
  ip: string;
  gateway: string;
  dns: string;
  mac: string;
  tap?: string | undefined;
  netns?: string | undefined;
  forwards: PortForward[];
  /** May the VM reach beyond formnet (absent in records made before egress existed = yes). */
  egress?: boolean | undefined;
}

/** What instances may reach and how they resolve names (tap mode; user mode has QEMU's own NAT and DNS). */
export interface VmNetworkOptions {
  /** Node-wide egress switch (default 'on'); a VM's `egress: false` turns it off for that VM only. */
  egress?: 'on' | 'off' | undefined;
  /** Answer `<name>.<domain>` for guests from these records; other names go upstream. */
  dns?: { domain: string; records: DnsRecords } | undefined;
  /** Upstream resolvers for guests; default: the namespace's resolv.conf. */
  dnsUpstreams?: Upstream[] | undefined;
  /** Guest DNS on the bridge gateway (default true). */
  dnsForwarder?: boolean | undefined;
  /** Port of the guest DNS forwarder (default 53; guests only use 53). */
  dnsPort?: number | undefined;
}

export function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new FormError('CONFIG_INVALID', `Not an IPv4 address: ${ip}`);
  }
  return (((p[0] ?? 0) << 24) | ((p[1] ?? 0) << 16) | ((p[2] ?? 0) << 8) | (p[3] ?? 0)) >>> 0;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parse `a.b.c.d/nn` into network, prefix and the usable host range (first = gateway/bridge). */
export function parseCidr(cidr: string): { network: number; prefix: number; first: number; last: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const prefix = Number(m?.[2]);
  if (!m || prefix < 8 || prefix > 30) {
    throw new FormError('CONFIG_INVALID', `Cannot use network range ${cidr}: expected a.b.c.d/nn with nn in 8..30`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(m[1] as string) & mask) >>> 0;
  const broadcast = (network | (~mask >>> 0)) >>> 0;
  return { network, prefix, first: network + 1, last: broadcast - 1 };
}

/** A stable, locally administered MAC for a VM (52:54:00 prefix + 3 bytes of sha256(id)). */
export function macFor(id: string, salt = 0): string {
  const h = createHash('sha256').update(`${id}/${salt}`).digest();
  return `52:54:00:${[h[0], h[1], h[2]].map((b) => (b ?? 0).toString(16).padStart(2, '0')).join(':')}`;
}

/** A TAP name for a VM: unique per id, within IFNAMSIZ (15). */
export function tapFor(id: string, salt = 0): string {
  return `ftap${createHash('sha256').update(`${id}/${salt}`).digest('hex').slice(0, 10)}`;
}

/** True when `n` is a TCP port number: an integer 1..65535 (not a string that looks like one). */
export function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The node's VM network. `user`: QEMU slirp with host forwards on 127.0.0.1 only (no root, nothing
 * exposed beyond loopback). `tap`: a bridge holding the range's first address, one TAP per VM, all
 * inside `netns` (created on demand), addresses assigned from the range and never reused while allocated.
 */
export class VmNetwork {
  readonly cfg: NetworkConfig;
  private readonly log: Logger;
  private readonly opts: VmNetworkOptions;
  private readonly logger: Logger;
  private createdNetns = false;
  private firewall: EgressFirewall | undefined;
  private dns: DnsForwarder | undefined;
  /** Addresses, MACs and TAP names handed out to creates not yet recorded (concurrent creates). */
  private readonly inflight = new Set<string>();
  /** Addresses of VMs without egress: the DNS forwarder relays nothing for them. */
  private readonly noEgress = new Set<string>();
  /** Scale to zero: per-VM traffic without health probes (`activity.ts`); tap mode only. */
  private activity: ActivityCounters | undefined;
  private activityWarned = false;

  constructor(cfg: NetworkConfig, logger: Logger, opts: VmNetworkOptions = {}) {
    this.cfg = cfg;
    this.opts = opts;
    this.logger = logger;
    this.log = logger.child({ component: 'vmm-net' });
    if (cfg.mode === 'tap') parseCidr(cfg.cidr);
  }

  /** The node-wide egress switch. */
  get egress(): 'on' | 'off' {
    return this.opts.egress ?? 'on';
  }

  private ip(args: string[]): Promise<{ stdout: string }> {
    const full = this.cfg.netns ? ['-n', this.cfg.netns, ...args] : args;
    return execFileP('ip', full).catch((err: { stderr?: string; message: string }) => {
      throw new FormError('NET_ERROR', `Cannot run ip ${full.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
    });
  }

  /** Set up the bridge (and namespace) for tap mode. Idempotent. */
  async init(): Promise<void> {
    if (this.cfg.mode !== 'tap') return;
    if (process.getuid?.() !== 0) {
      throw new FormError('HOST_UNSUPPORTED', 'Cannot use tap networking: the VMM is not running as root', {
        hint: "Run as root, or use network.mode 'user'.",
      });
    }
    const ns = this.cfg.netns;
    if (ns && !existsSync(`/run/netns/${ns}`)) {
      if (!this.cfg.createNetns) {
        throw new FormError('NET_ERROR', `Cannot use network namespace ${ns}: it does not exist`, {
          hint: 'Create it, or set network.createNetns.',
        });
      }
      await execFileP('ip', ['netns', 'add', ns]);
      this.createdNetns = true;
      await this.ip(['link', 'set', 'lo', 'up']);
    }
    const { first, prefix } = parseCidr(this.cfg.cidr);
    const exists = await this.ip(['link', 'show', this.cfg.bridge]).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await this.ip(['link', 'add', this.cfg.bridge, 'type', 'bridge']);
      await this.ip(['addr', 'add', `${intToIp(first)}/${prefix}`, 'dev', this.cfg.bridge]);
    }
    await this.ip(['link', 'set', this.cfg.bridge, 'up']);
    // Egress NAT, the per-port guards and no inbound except over formnet (see egress.ts).
    this.firewall ??= new EgressFirewall(
      { bridge: this.cfg.bridge, cidr: this.cfg.cidr, egress: this.egress, netns: ns || undefined },
      this.logger,
    );
    await this.firewall.install();
    if (this.opts.dnsForwarder !== false && !this.dns) {
      try {
        this.dns = await startDnsForwarder({
          netns: ns || undefined,
          host: intToIp(first),
          port: this.opts.dnsPort,
          clientCidr: this.cfg.cidr,
          domain: this.opts.dns?.domain,
          records: this.opts.dns?.records,
          upstreams: this.opts.dnsUpstreams,
          mayForward: (ip) => this.egress === 'on' && !this.noEgress.has(ip),
          logger: this.logger,
        });
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'guest DNS forwarder not started: new VMs get vm_dns=none');
      }
    }
    this.log.info(
      {
        netns: ns,
        bridge: this.cfg.bridge,
        cidr: this.cfg.cidr,
        egress: this.egress,
        dns: this.dns?.address() ?? null,
      },
      'vm network ready',
    );
  }

  /**
   * Assign network settings to a new VM. `taken` holds what existing VM records already use (addresses,
   * MACs, TAP names), so nothing is reused while allocated.
   */
  async assign(
    id: string,
    taken: { ips: Set<string>; macs: Set<string>; taps: Set<string> },
    guestPorts: number[],
    egress = true,
  ): Promise<VmNetAssignment> {
    // Ports come from a Formpack's EXPOSE (a peer's manifest) or an API caller and end up in QEMU's
    // `hostfwd=` option string: integers only, or a comma adds options (`guestfwd=…-cmd:` runs a command).
    for (const p of guestPorts) {
      if (!isPort(p)) {
        throw new FormError(
          'VM_BAD_ARGUMENT',
          `Cannot create VM ${id}: port ${JSON.stringify(p)} is not an integer 1..65535`,
          {
            hint: 'EXPOSE and forwardPorts take TCP port numbers.',
          },
        );
      }
    }
    let salt = 0;
    while (
      taken.macs.has(macFor(id, salt)) ||
      taken.taps.has(tapFor(id, salt)) ||
      this.inflight.has(macFor(id, salt)) ||
      this.inflight.has(tapFor(id, salt))
    )
      salt++;
    const mac = macFor(id, salt);
    if (this.cfg.mode === 'user') {
      const forwards: PortForward[] = [];
      for (const guest of [...new Set(guestPorts)]) forwards.push({ guest, host: await freePort() });
      return { mode: 'user', ip: '10.0.2.15/24', gateway: '10.0.2.2', dns: '10.0.2.3', mac, forwards, egress };
    }
    const { first, last, prefix } = parseCidr(this.cfg.cidr);
    for (let n = first + 1; n <= last; n++) {
      const addr = intToIp(n);
      if (taken.ips.has(addr) || this.inflight.has(addr)) continue;
      // Two creates at once must not get the same address: held until the VM's record exists.
      for (const x of [addr, mac, tapFor(id, salt)]) this.inflight.add(x);
      return {
        mode: 'tap',
        ip: `${addr}/${prefix}`,
        gateway: intToIp(first),
        // Guests resolve through the forwarder on their gateway (formnet names + upstream).
        dns: this.dns ? intToIp(first) : 'none',
        mac,
        tap: tapFor(id, salt),
        netns: this.cfg.netns || undefined,
        forwards: [],
        egress,
      };
    }
    throw new FormError('VM_NO_CAPACITY', `Cannot create VM ${id}: no free address left in ${this.cfg.cidr}`);
  }

  /** The VM's record now holds (or will never hold) what `assign` handed out. */
  settle(a: VmNetAssignment): void {
    for (const x of [a.ip.split('/')[0] as string, a.mac, a.tap ?? '']) this.inflight.delete(x);
  }

  /** Create the VM's TAP device on the bridge (tap mode; idempotent). */
  async attach(a: VmNetAssignment): Promise<void> {
    const tap = a.tap;
    if (a.mode !== 'tap' || !tap) return;
    // One `ip` per step (each start costs on the boot path): add, and only when that fails ask
    // whether it is there already (a VM started again keeps its TAP).
    await this.ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap']).catch(async (err: unknown) => {
      const exists = await this.ip(['link', 'show', tap]).then(
        () => true,
        () => false,
      );
      if (!exists) throw err;
    });
    // Guard first: the port's source address and egress are enforced before it carries a frame.
    await this.guard(a);
    await this.ip(['link', 'set', 'dev', tap, 'master', this.cfg.bridge, 'up']);
    // Scale to zero: count its traffic from the start (a failure here shows at `counters`).
    await this.activityCounters()
      .add(a.ip.split('/')[0] as string)
      .catch(() => undefined);
  }

  /** Register a VM's port with the firewall (its one address; egress or not). Used for re-attached VMs. */
  async guard(a: VmNetAssignment): Promise<void> {
    if (a.mode !== 'tap' || !a.tap || !this.firewall) return;
    const ip = a.ip.split('/')[0] as string;
    if (a.egress === false) this.noEgress.add(ip);
    else this.noEgress.delete(ip);
    await this.firewall.addPort({ port: a.tap, ip, egress: a.egress !== false });
  }

  /** Remove the VM's TAP device (tap mode; missing is fine). */
  async detach(a: VmNetAssignment): Promise<void> {
    if (a.mode !== 'tap' || !a.tap) return;
    await this.ip(['link', 'del', a.tap]).catch(() => undefined);
    await this.firewall?.removePort(a.tap);
    this.noEgress.delete(a.ip.split('/')[0] as string);
    await this.activity?.forget(a.ip.split('/')[0] as string);
  }

  /**
   * The VM's traffic for idle detection (tap mode; guest-side: `rxBytes` toward the guest): bytes not
   * from or to a health probe's source port (`activity.ts`, nft counters in the bridge's namespace,
   * counting from the first call). Where nft cannot count, the TAP's byte counters (probes included,
   * warned once). Undefined when not measurable (user mode, no TAP yet).
   */
  async counters(a: VmNetAssignment): Promise<{ rxBytes: number; txBytes: number } | undefined> {
    if (a.mode !== 'tap' || !a.tap) return undefined;
    const ip = a.ip.split('/')[0] as string;
    try {
      return await this.activityCounters().count(ip);
    } catch (err) {
      if (!this.activityWarned) {
        this.activityWarned = true;
        this.log.warn(
          { err: (err as Error).message },
          'cannot count VM traffic without health probes (nft): idle detection uses TAP counters, so probed replicas never go idle',
        );
      }
    }
    return this.tapCounters(a.tap);
  }

  private activityCounters(): ActivityCounters {
    this.activity ??= new ActivityCounters({ netns: this.cfg.netns || undefined, bridge: this.cfg.bridge });
    return this.activity;
  }

  /** Bytes through a TAP since it was made (the guest's receive = the TAP's transmit). */
  private async tapCounters(tap: string): Promise<{ rxBytes: number; txBytes: number } | undefined> {
    try {
      const { stdout } = await this.ip(['-s', '-j', 'link', 'show', 'dev', tap]);
      const j = JSON.parse(stdout) as Array<{ stats64?: { rx?: { bytes?: number }; tx?: { bytes?: number } } }>;
      const st = j[0]?.stats64;
      if (typeof st?.rx?.bytes !== 'number' || typeof st?.tx?.bytes !== 'number') return undefined;
      return { rxBytes: st.tx.bytes, txBytes: st.rx.bytes };
    } catch {
      return undefined;
    }
  }

  /** Delete the namespace if this VMM created it (or owns it: `createNetns`). */
  async close(): Promise<void> {
    await this.dns?.close();
    this.dns = undefined;
    await this.firewall?.remove();
    await this.activity?.close();
    this.activity = undefined;
    if ((this.createdNetns || this.cfg.createNetns) && this.cfg.netns && existsSync(`/run/netns/${this.cfg.netns}`)) {
      await execFileP('ip', ['netns', 'del', this.cfg.netns]).catch(() => undefined);
      this.createdNetns = false;
    }
  }
}
