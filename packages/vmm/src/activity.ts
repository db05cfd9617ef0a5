// Scale to zero: how busy a VM is, without health probing. The node suspends a replica whose traffic
// stood still for its autostop time; the TAP's byte counters also move for every HEALTHCHECK probe (the
// holding node's, and every node's ingress prober, every few seconds), so a probed replica never went
// idle. Probes bind a source port in PROBE_SOURCE_PORTS; an nft table in the bridge's namespace counts
// a VM's traffic except that of connections from those ports (named counters per VM address).
import { execFile } from 'node:child_process';
import { FormError, PROBE_SOURCE_PORTS } from '@formation/interface';
import { bridgeTableName, isIpv4 } from './nft-table.ts';

/** Our nft table for a bridge's activity counters (one per bridge; deleting it removes exactly ours). */
export function activityTableName(bridge: string): string {
  return bridgeTableName('act', bridge);
}

function checkIpv4(ip: string): void {
  if (!isIpv4(ip)) {
    throw new FormError(
      'VM_BAD_ARGUMENT',
      `Cannot count traffic of ${JSON.stringify(ip)}: not an IPv4 address (a VM's tap-mode address is one)`,
    );
  }
}

/** The counter names of a VM address: `in_…` toward the guest, `out_…` from it. */
export function activityCounterNames(ip: string): { toGuest: string; fromGuest: string } {
  checkIpv4(ip);
  const k = ip.replace(/\./g, '_');
  return { toGuest: `in_${k}`, fromGuest: `out_${k}` };
}

/** `first-last` of the probe source ports, for nft. */
export const PROBE_PORT_RANGE = `${PROBE_SOURCE_PORTS.first}-${PROBE_SOURCE_PORTS.last}`;

/**
 * The nft script counting each VM address's traffic except health probes (pure; one `nft -f`
 * transaction replacing the table). Counted where routed or local traffic to and from the bridge passes:
 * forward (formnet over WireGuard, the ingress of another node), output and input (the namespace's own
 * sockets: the node's probes, the wake gate's splice, the guest's DNS on its gateway). Both directions
 * of a TCP connection opened *toward the guest from a probe port* (conntrack's original direction) are
 * skipped (`return`); the rest is counted — a guest's own connection to a remote port in that range
 * (a database on 5432) still counts. Frames between two guests on the bridge pass no netfilter hook and are not counted (they
 * were in the TAP counters). No addresses: the table is deleted.
 *
 * @example activityRuleset('formbr0', ['10.129.7.2'])
 */
export function activityRuleset(bridge: string, ips: readonly string[]): string {
  const t = activityTableName(bridge);
  const head = `table ip ${t}\ndelete table ip ${t}\n`;
  const uniq = [...new Set(ips)];
  if (uniq.length === 0) return head;
  const counters: string[] = [];
  const rules: string[] = [];
  for (const ip of uniq) {
    const n = activityCounterNames(ip);
    counters.push(`  counter ${n.toGuest} {\n  }`, `  counter ${n.fromGuest} {\n  }`);
    rules.push(
      `    meta l4proto tcp ct original ip daddr ${ip} ct original proto-src ${PROBE_PORT_RANGE} return`,
      `    ip daddr ${ip} counter name ${n.toGuest}`,
      `    ip saddr ${ip} counter name ${n.fromGuest}`,
    );
  }
  const hook = (name: string, h: string) =>
    `  chain ${name} {\n    type filter hook ${h} priority filter - 5; policy accept;\n    jump count\n  }`;
  return `${head}table ip ${t} {
${counters.join('\n')}
  chain count {
${rules.join('\n')}
  }
${hook('count_forward', 'forward')}
${hook('count_output', 'output')}
${hook('count_input', 'input')}
}
`;
}

/**
 * Bytes per address from `nft -j list counters table ip <t>` (pure): guest-side, as the TAP counters
 * were (`rxBytes` = toward the guest). Addresses without both counters are absent.
 */
export function parseActivityCounters(
  json: string,
  ips: readonly string[],
): Map<string, { rxBytes: number; txBytes: number }> {
  const bytes = new Map<string, number>();
  let doc: { nftables?: Array<{ counter?: { name?: unknown; bytes?: unknown } }> };
  try {
    doc = JSON.parse(json);
  } catch {
    return new Map();
  }
  for (const e of doc.nftables ?? []) {
    const c = e.counter;
    if (c && typeof c.name === 'string' && typeof c.bytes === 'number') bytes.set(c.name, c.bytes);
  }
  const out = new Map<string, { rxBytes: number; txBytes: number }>();
  for (const ip of ips) {
    const n = activityCounterNames(ip);
    const rx = bytes.get(n.toGuest);
    const tx = bytes.get(n.fromGuest);
    if (rx !== undefined && tx !== undefined) out.set(ip, { rxBytes: rx, txBytes: tx });
  }
  return out;
}

function nft(netns: string | undefined, args: string[], stdin?: string): Promise<string> {
  return new Promise((ok, fail) => {
    const p = execFile(netns ? 'ip' : 'nft', netns ? ['netns', 'exec', netns, 'nft', ...args] : args, (err, out, e) =>
      err ? fail(new FormError('NET_ERROR', `nft ${args[0]}: ${(e || err.message).trim()}`)) : ok(String(out)),
    );
    p.stdin?.end(stdin ?? '');
  });
}

/**
 * The counters of one bridge's VMs (the real side of `activityRuleset`): `add(ip)` when the VM's TAP is
 * attached (re-applying the table; a VM the VMM re-attached after a restart is added at its first
 * `count`), `count(ip)` reads it.
 */
export class ActivityCounters {
  private readonly ips = new Set<string>();
  private applied = false;

  private readonly o: { netns?: string | undefined; bridge: string };

  constructor(o: { netns?: string | undefined; bridge: string }) {
    this.o = o;
  }

  private async apply(): Promise<void> {
    this.applied = true;
    await nft(this.o.netns, ['-f', '-'], activityRuleset(this.o.bridge, [...this.ips]));
  }

  /** Start counting `ip` (idempotent; its VM's TAP is being attached). */
  async add(ip: string): Promise<void> {
    checkIpv4(ip);
    if (this.ips.has(ip)) return;
    this.ips.add(ip);
    try {
      await this.apply();
    } catch (err) {
      this.ips.delete(ip);
      throw err;
    }
  }

  /** Non-probe bytes to and from `ip` since it was first counted (added now if it was not). */
  async count(ip: string): Promise<{ rxBytes: number; txBytes: number }> {
    await this.add(ip);
    const out = await nft(this.o.netns, ['-j', 'list', 'counters', 'table', 'ip', activityTableName(this.o.bridge)]);
    const c = parseActivityCounters(out, [ip]).get(ip);
    if (!c)
      throw new FormError(
        'NET_ERROR',
        `No activity counters for ${ip} in nft (the table was changed outside the VMM?)`,
      );
    return c;
  }

  /** Stop counting `ip` (its VM's TAP went). */
  async forget(ip: string): Promise<void> {
    if (this.ips.delete(ip)) await this.apply().catch(() => undefined);
  }

  /** Remove the table (at VMM stop). */
  async close(): Promise<void> {
    this.ips.clear();
    if (this.applied) await this.apply().catch(() => undefined);
  }
}
