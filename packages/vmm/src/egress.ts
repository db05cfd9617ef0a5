import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { bridgeTableName, isIpv4 } from './nft-table.ts';

const execFileP = promisify(execFile);

/** formnet: the overlay every node's instance slice and every member address lives in. */
export const FORMNET_RANGE = '10.128.0.0/9';

export interface EgressOptions {
  /** The instance bridge (its name tags our nft tables). */
  bridge: string;
  /** The node's instance range on the bridge, e.g. 10.129.7.0/24. */
  cidr: string;
  /** Node-wide switch: 'off' keeps instances inside formnet. */
  egress: 'on' | 'off';
  /** Network namespace the rules go into; empty = the namespace this process runs in. */
  netns?: string | undefined;
}

/** One VM's bridge port as the firewall knows it. */
export interface EgressPort {
  /** The TAP (or, in tests, veth) device on the bridge. */
  port: string;
  /** The one IPv4 address this port may send from. */
  ip: string;
  /** False: nothing outside formnet (this VM's own range and gateway are inside it). */
  egress: boolean;
}

/** Our nft table name for a bridge: one name per bridge, so `nft delete table` removes exactly ours. */
export function egressTableName(bridge: string): string {
  return bridgeTableName('egress', bridge);
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const CIDR_RE = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\/(\d{1,2})$/;

function checkIfname(what: string, name: string): void {
  if (!IFNAME_RE.test(name)) {
    throw new FormError(
      'VM_BAD_ARGUMENT',
      `Cannot write firewall rules: ${what} ${JSON.stringify(name)} is not an interface name`,
      {
        hint: 'Interface names are 1-15 characters of A-Z, a-z, 0-9, _ . -',
      },
    );
  }
}

function checkIpv4(what: string, ip: string): void {
  if (!isIpv4(ip)) {
    throw new FormError(
      'VM_BAD_ARGUMENT',
      `Cannot write firewall rules: ${what} ${JSON.stringify(ip)} is not an IPv4 address`,
    );
  }
}

/**
 * The nft ruleset (pure; `nft -f` applies it in one transaction). Two tables named after the bridge:
 *
 * - `bridge form_egress_<br>`: per bridge port (TAP), the only source address it may use (a guest that
 *   takes its neighbour's address to get its egress is dropped), and the ports without egress may send
 *   only to formnet (which holds their own range and gateway).
 * - `inet form_egress_<br>`: forwarding from the bridge only from the instance range, to formnet always,
 *   elsewhere when egress is on; to the bridge only replies, or formnet sources that route back the way
 *   they came (WireGuard; a spoofed 10.128/9 source from the internet side meets the leak guard's
 *   `unreachable` route and is dropped); no IPv6. Masquerade to the outgoing interface's address for
 *   everything that leaves formnet.
 *
 * The first lines create then delete the tables, so applying it again replaces them (idempotent).
 */
export function egressRuleset(o: EgressOptions, ports: EgressPort[] = []): string {
  checkIfname('bridge', o.bridge);
  const m = CIDR_RE.exec(o.cidr);
  if (!m) throw new FormError('CONFIG_INVALID', `Cannot write firewall rules: ${o.cidr} is not a.b.c.d/nn`);
  checkIpv4('range', m[1] as string);
  for (const p of ports) {
    checkIfname('port', p.port);
    checkIpv4(`address of ${p.port}`, p.ip);
  }
  const t = egressTableName(o.bridge);
  const br = JSON.stringify(o.bridge);
  const elems = (xs: string[]): string => (xs.length ? `\n    elements = { ${xs.join(', ')} }` : '');
  return `table bridge ${t}
delete table bridge ${t}
table inet ${t}
delete table inet ${t}
table bridge ${t} {
  set ports {
    type ifname${elems(ports.map((p) => JSON.stringify(p.port)))}
  }
  set addrs {
    type ifname . ipv4_addr${elems(ports.map((p) => `${JSON.stringify(p.port)} . ${p.ip}`))}
  }
  set noegress {
    type ifname${elems(ports.filter((p) => !p.egress).map((p) => JSON.stringify(p.port)))}
  }
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname @ports iifname . ip saddr != @addrs counter drop comment "spoofed source"
    iifname @noegress ip daddr != ${FORMNET_RANGE} counter drop comment "egress off for this VM"
  }
}
table inet ${t} {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname ${br} oifname ${br} accept
    iifname ${br} meta nfproto ipv6 counter drop
    iifname ${br} ip saddr != ${o.cidr} counter drop comment "not an instance address"
    iifname ${br} ip daddr ${FORMNET_RANGE} accept
    iifname ${br} ${o.egress === 'on' ? 'accept' : 'counter drop comment "egress off on this node"'}
    oifname ${br} ct state established,related accept
    oifname ${br} fib saddr . iif oif missing counter drop comment "formnet source not from formnet"
    oifname ${br} ip saddr ${FORMNET_RANGE} accept
    oifname ${br} counter drop comment "no inbound to instances except over formnet"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${o.cidr} ip daddr != ${FORMNET_RANGE} oifname != ${br} masquerade
  }
}
`;
}

/** The delete-only script: removes our two tables, whether or not they exist. */
export function egressRemoval(bridge: string): string {
  const t = egressTableName(bridge);
  return `table bridge ${t}\ndelete table bridge ${t}\ntable inet ${t}\ndelete table inet ${t}\n`;
}

/**
 * Egress for a node's instances (nftables): installs the tables above in the node's namespace, keeps
 * the leak guard (`unreachable 10.128.0.0/9`) there and IPv4 forwarding on, registers VM ports as they
 * attach, and removes exactly what it added. Nothing is written outside `netns` (when one is given).
 *
 * @example
 * const fw = new EgressFirewall({ bridge: 'formbr0', cidr: '10.129.7.0/24', egress: 'on', netns: 'n1' }, log);
 * await fw.install(); await fw.addPort({ port: 'ftap…', ip: '10.129.7.2', egress: false }); await fw.remove();
 */
export class EgressFirewall {
  readonly o: EgressOptions;
  private readonly log: Logger;
  private readonly ports = new Map<string, EgressPort>();
  private addedGuard = false;
  private forwardBefore: string | undefined;
  private installed = false;

  constructor(o: EgressOptions, logger: Logger) {
    this.o = o;
    this.log = logger.child({ component: 'vmm-egress' });
    egressRuleset(o); // validate now, not at the first VM
  }

  private async exec(cmd: string, args: string[], input?: string): Promise<string> {
    const argv = this.o.netns ? ['netns', 'exec', this.o.netns, cmd, ...args] : args;
    const bin = this.o.netns ? 'ip' : cmd;
    return new Promise((resolve, reject) => {
      const child = execFile(bin, argv, { timeout: 15_000 }, (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'HOST_UNSUPPORTED' : 'NET_ERROR';
          reject(
            new FormError(
              code,
              `Cannot run ${cmd} ${args.join(' ')}${this.o.netns ? ` in ${this.o.netns}` : ''}: ${(stderr || err.message).trim()}`,
              {
                hint:
                  code === 'HOST_UNSUPPORTED'
                    ? 'Install nftables (apt-get install nftables), or set egress off.'
                    : 'The VMM needs root for firewall rules.',
              },
            ),
          );
        } else resolve(stdout);
      });
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  private apply(): Promise<string> {
    return this.exec('nft', ['-f', '-'], egressRuleset(this.o, [...this.ports.values()]));
  }

  /** Install (or replace) the rules; keeps ports registered so far. Idempotent. */
  async install(): Promise<void> {
    await this.exec('nft', ['--version']).catch((err: FormError) => {
      throw new FormError('HOST_UNSUPPORTED', `Cannot set up instance egress: nft is not installed (${err.message})`, {
        hint: 'apt-get install nftables (scripts/setup.sh does), or set the VMM egress option to off.',
      });
    });
    // The leak guard: formnet addresses no peer holds are refused here, never sent to the default gateway.
    const guard = await this.exec('ip', ['-j', 'route', 'show', 'exact', FORMNET_RANGE]);
    if (!/"unreachable"|"blackhole"|"prohibit"/.test(guard) && !this.addedGuard) {
      if (guard.trim() !== '' && guard.trim() !== '[]') {
        throw new FormError(
          'NET_ERROR',
          `Cannot set up instance egress: ${FORMNET_RANGE} already has a route here (${guard.trim()})`,
          {
            hint: 'formnet must not be routed to a gateway; remove that route.',
          },
        );
      }
      await this.exec('ip', ['route', 'replace', 'unreachable', FORMNET_RANGE]);
      this.addedGuard = true;
    }
    if (this.o.egress === 'on') {
      const fwd = (await this.exec('sysctl', ['-n', 'net.ipv4.ip_forward'])).trim();
      if (fwd !== '1') {
        this.forwardBefore ??= fwd;
        await this.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      }
    }
    await this.apply();
    this.installed = true;
    this.log.info(
      {
        netns: this.o.netns ?? null,
        bridge: this.o.bridge,
        cidr: this.o.cidr,
        egress: this.o.egress,
        table: egressTableName(this.o.bridge),
      },
      'instance egress rules installed',
    );
  }

  /** Register a VM's bridge port: its one source address, and whether it may leave formnet. */
  async addPort(p: EgressPort): Promise<void> {
    egressRuleset(this.o, [p]);
    this.ports.set(p.port, p);
    if (this.installed) await this.apply();
  }

  async removePort(port: string): Promise<void> {
    if (!this.ports.delete(port)) return;
    if (this.installed) await this.apply();
  }

  /** Remove our tables, the leak guard route and the forwarding switch if we added them. Idempotent. */
  async remove(): Promise<void> {
    await this.exec('nft', ['-f', '-'], egressRemoval(this.o.bridge)).catch((err: unknown) =>
      this.log.warn({ err }, 'removing egress rules failed'),
    );
    if (this.addedGuard) {
      await this.exec('ip', ['route', 'del', 'unreachable', FORMNET_RANGE]).catch(() => undefined);
      this.addedGuard = false;
    }
    if (this.forwardBefore !== undefined) {
      await this.exec('sysctl', ['-qw', `net.ipv4.ip_forward=${this.forwardBefore}`]).catch(() => undefined);
      this.forwardBefore = undefined;
    }
    this.installed = false;
    this.ports.clear();
  }
}

/** Our tables in `netns` (for tests and `form node doctor`): the nft ruleset filtered to them. */
export async function listEgressTables(netns?: string): Promise<string[]> {
  const argv = netns ? ['netns', 'exec', netns, 'nft', '-j', 'list', 'tables'] : ['-j', 'list', 'tables'];
  const { stdout } = await execFileP(netns ? 'ip' : 'nft', argv);
  const parsed = JSON.parse(stdout) as { nftables: Array<{ table?: { family: string; name: string } }> };
  return parsed.nftables
    .flatMap((x) => (x.table ? [`${x.table.family} ${x.table.name}`] : []))
    .filter((n) => n.split(' ')[1]?.startsWith('form_egress_'));
}
