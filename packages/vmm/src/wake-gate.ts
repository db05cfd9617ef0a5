import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { PROBE_PORT_RANGE } from './activity.ts';
import { isPort } from './network.ts';
import { bridgeTableName, isIpv4 } from './nft-table.ts';

const execFileP = promisify(execFile);
const CHILD = fileURLToPath(new URL('./wake-gate-child.ts', import.meta.url));

/** A suspended VM the gate answers for: its address and guest TCP ports. */
export interface WakeTarget {
  id: string;
  ip: string;
  ports: number[];
}

/** One held port: connections to `ip:port` go to the gate's listener on `host:hostPort`. */
export interface WakeRule {
  ip: string;
  port: number;
  hostPort: number;
}

/** Our nft table for a bridge's wake rules (one per bridge: `nft delete table` removes exactly ours). */
export function wakeTableName(bridge: string): string {
  return bridgeTableName('wake', bridge);
}

function checkIpv4(ip: string): void {
  if (!isIpv4(ip)) {
    throw new FormError('VM_BAD_ARGUMENT', `Cannot write wake rules: ${JSON.stringify(ip)} is not an IPv4 address`);
  }
}

/**
 * The nft script for the held ports (pure; applied in one `nft -f` transaction, replacing the table).
 * Only packets that arrive from outside (prerouting: formnet over WireGuard, the ingress) are
 * redirected; the gate's own connection to the resumed VM starts in the namespace (output) and goes
 * straight to it. Connections already redirected keep their NAT in conntrack after a rule goes, so a
 * held connection survives the rule's removal at wake. A health probe (source port in
 * PROBE_SOURCE_PORTS) is never held, so it never wakes the VM: it is refused at once with a TCP reset
 * (the probers stop probing a replica once it is reported suspended; this covers the moment before).
 *
 * The table also holds `track`, a NAT chain with a rule that needs conntrack: the kernel tracks
 * connections in a namespace only while some rule there needs it, and applies the NAT of existing
 * connections only while some NAT chain is registered; a held connection's DNAT lives in conntrack
 * alone once its rule is gone. Without `track`, removing the last DNAT rule at a wake left the spliced
 * connection's replies untranslated where no other table kept both (the client reset them; seen in a
 * namespace with no other nft table). So the table stays, with `track` only, after its last rule goes
 * (`keep`), until the gate closes. No rules and no `keep`: the table is deleted.
 *
 * @example wakeRuleset('formbr0', '10.129.7.1', [{ ip: '10.129.7.2', port: 80, hostPort: 40123 }])
 */
export function wakeRuleset(bridge: string, host: string, rules: WakeRule[], keep = false): string {
  checkIpv4(host);
  const t = wakeTableName(bridge);
  const head = `table ip ${t}\ndelete table ip ${t}\n`;
  const track = `  chain track {
    type nat hook prerouting priority dstnat; policy accept;
    ct state established,related accept
  }
`;
  if (rules.length === 0) return keep ? `${head}table ip ${t} {\n${track}}\n` : head;
  const lines = rules.map((r) => {
    checkIpv4(r.ip);
    if (!isPort(r.port) || !isPort(r.hostPort)) {
      throw new FormError(
        'VM_BAD_ARGUMENT',
        `Cannot write wake rules: port ${r.port} or ${r.hostPort} is not 1..65535`,
      );
    }
    return `    ip daddr ${r.ip} tcp dport ${r.port} dnat to ${host}:${r.hostPort}`;
  });
  const ips = [...new Set(rules.map((r) => r.ip))];
  return `${head}table ip ${t} {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    tcp sport ${PROBE_PORT_RANGE} return
${lines.join('\n')}
  }
  chain probes {
    type filter hook forward priority filter; policy accept;
${ips.map((ip) => `    ip daddr ${ip} tcp sport ${PROBE_PORT_RANGE} reject with tcp reset`).join('\n')}
  }
${track}}
`;
}

export interface WakeGateOptions {
  /** Namespace of the bridge (empty: this process's). */
  netns?: string | undefined;
  bridge: string;
  /** The bridge's own address (the gate listens there). */
  host: string;
  logger: Logger;
}

type ChildMsg =
  | { op: 'listening'; id: string; port: number; hostPort: number }
  | { op: 'held'; id: string; port: number }
  | { op: 'error'; id?: string; message: string };

/**
 * Wake on connection for suspended VMs (tap mode). A helper process in the bridge's namespace
 * (`wake-gate-child.ts`) listens on the bridge address, one port per held guest port; nftables sends
 * new connections for a suspended VM's address there. A held connection asks `wake` once; when the
 * VM runs again (`release(id, true)`) the rules go and the helper splices every held connection to the
 * VM. A failed wake closes the connections held so far; the VM stays suspended and held.
 */
export class WakeGate {
  private readonly o: WakeGateOptions;
  private readonly log: Logger;
  private child: ChildProcess | undefined;
  /** Whether this gate ever wrote its table (a node that never suspended anything runs no nft at close). */
  private applied = false;
  private readonly rules = new Map<string, WakeRule[]>();
  private readonly wakers = new Map<string, () => Promise<void>>();
  private readonly pending = new Map<string, { left: number; rules: WakeRule[]; done: (e?: Error) => void }>();

  constructor(o: WakeGateOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'wake-gate' });
  }

  private send(m: Record<string, unknown>): void {
    if (this.child?.connected) this.child.send(m);
  }

  private ensureChild(): ChildProcess {
    if (this.child && this.child.exitCode === null && this.child.connected) return this.child;
    const [cmd, args] = this.o.netns
      ? ['ip', ['netns', 'exec', this.o.netns, process.execPath, CHILD]]
      : [process.execPath, [CHILD]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    child.stderr?.on('data', (d: Buffer) => this.log.warn({ stderr: d.toString().trim() }, 'wake gate helper'));
    child.on('message', (m: ChildMsg) => this.onMessage(m));
    child.on('exit', (code) => {
      if (this.child === child) this.child = undefined;
      for (const [id, p] of this.pending) {
        p.done(new FormError('NET_ERROR', `wake gate helper ended (code ${code})`));
        this.pending.delete(id);
      }
    });
    child.unref();
    this.child = child;
    return child;
  }

  private onMessage(m: ChildMsg): void {
    if (m.op === 'listening') {
      const p = this.pending.get(m.id);
      if (!p) return;
      p.rules.push({ ip: p.rules[0]?.ip ?? '', port: m.port, hostPort: m.hostPort });
      if (--p.left === 0) {
        this.pending.delete(m.id);
        p.done();
      }
    } else if (m.op === 'held') {
      const wake = this.wakers.get(m.id);
      this.log.info({ id: m.id, port: m.port }, 'connection for a suspended vm: waking it');
      if (!wake) {
        this.send({ op: 'fail', id: m.id });
        return;
      }
      wake().catch((err: unknown) => {
        this.log.warn({ id: m.id, err: (err as Error).message }, 'wake on connection failed: held connections closed');
        this.send({ op: 'fail', id: m.id });
      });
    } else if (m.op === 'error') {
      const p = m.id ? this.pending.get(m.id) : undefined;
      if (p && m.id) {
        this.pending.delete(m.id);
        p.done(new FormError('NET_ERROR', `Cannot hold connections for VM ${m.id}: ${m.message}`));
      } else this.log.warn({ id: m.id, err: m.message }, 'wake gate helper error');
    }
  }

  /** Write the table: the held ports' rules; with none, `keep` leaves the conntrack rule (wakeRuleset). */
  private async apply(keep = true): Promise<void> {
    this.applied = true;
    const script = wakeRuleset(this.o.bridge, this.o.host, [...this.rules.values()].flat(), keep);
    const argv = this.o.netns ? ['netns', 'exec', this.o.netns, 'nft', '-f', '-'] : ['-f', '-'];
    await new Promise<void>((ok, fail) => {
      const p = execFile(this.o.netns ? 'ip' : 'nft', argv, (err, _o, stderr) =>
        err ? fail(new FormError('NET_ERROR', `Cannot apply wake rules: ${(stderr || err.message).trim()}`)) : ok(),
      );
      p.stdin?.end(script);
    });
  }

  /** At VMM start: drop a table a crashed VMM left (its rules point at a helper that is gone). */
  async reset(): Promise<void> {
    await this.apply(false);
  }

  /** Answer for a suspended VM: listeners up, then the rules (so no connection meets a closed port). */
  async hold(t: WakeTarget, wake: () => Promise<void>): Promise<void> {
    checkIpv4(t.ip);
    const ports = [...new Set(t.ports)].filter(isPort);
    if (ports.length === 0) return;
    await this.release(t.id, false);
    const child = this.ensureChild();
    const rules: WakeRule[] = [];
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => {
        this.pending.delete(t.id);
        fail(new FormError('TIMEOUT', `Cannot hold connections for VM ${t.id}: the helper did not answer in 10 s`));
      }, 10_000);
      this.pending.set(t.id, {
        left: ports.length,
        rules,
        done: (e) => {
          clearTimeout(timer);
          if (e) fail(e);
          else ok();
        },
      });
      child.send({ op: 'listen', id: t.id, ip: t.ip, host: this.o.host, ports });
    });
    for (const r of rules) r.ip = t.ip;
    this.wakers.set(t.id, wake);
    this.rules.set(t.id, rules);
    await this.apply();
    this.log.info({ id: t.id, ip: t.ip, ports }, 'holding connections while suspended');
  }

  /**
   * Stop answering for a VM: its rules go first; then `up` splices held connections to the VM (it runs
   * again), else they are closed (stopped, destroyed).
   */
  async release(id: string, up: boolean): Promise<void> {
    this.wakers.delete(id);
    if (this.rules.delete(id)) {
      await this.apply().catch((err: unknown) =>
        this.log.error({ id, err: (err as Error).message }, 'wake rules not removed'),
      );
    }
    this.send({ op: up ? 'up' : 'close', id });
  }

  /** The gate's rules in the namespace (tests, doctor). */
  async listRules(): Promise<string> {
    const t = wakeTableName(this.o.bridge);
    const argv = this.o.netns
      ? ['netns', 'exec', this.o.netns, 'nft', 'list', 'table', 'ip', t]
      : ['list', 'table', 'ip', t];
    return (await execFileP(this.o.netns ? 'ip' : 'nft', argv).catch(() => ({ stdout: '' }))).stdout;
  }

  /** Remove the rules and end the helper (held connections close). */
  async close(): Promise<void> {
    this.rules.clear();
    this.wakers.clear();
    if (this.applied) await this.apply(false).catch(() => undefined);
    const c = this.child;
    this.child = undefined;
    if (c && c.exitCode === null) {
      const gone = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill();
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    }
  }
}
