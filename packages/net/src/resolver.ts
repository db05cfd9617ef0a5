import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { run, tryRun } from './exec.ts';

/**
 * How a member's machine learns to resolve `<name>.<domain>` through the node's DNS on formnet:
 * - `resolvectl`: systemd-resolved sends only `~<domain>` to the node (split DNS, per interface);
 * - `netns-resolv`: inside a named network namespace, `/etc/netns/<ns>/resolv.conf` (what
 *   `ip netns exec <ns>` bind-mounts over /etc/resolv.conf for the commands it starts) lists the node
 *   first, then the nameservers that were there before (glibc asks the next server when one answers
 *   REFUSED, as the node does for other zones);
 * - `manual`: nothing we may change; `line` says what to add.
 */
export type ResolverPlan =
  | { kind: 'resolvectl'; iface: string; server: string; domain: string }
  | { kind: 'netns-resolv'; netns: string; path: string; server: string; domain: string; previous: string | null }
  | { kind: 'manual'; server: string; domain: string; line: string };

/** What this machine offers, as `probeResolver` finds it. */
export interface ResolverHost {
  resolvectl: boolean;
  /** Name of the named namespace this process runs in (`ip netns identify`), if any. */
  netns: string | undefined;
}

/** Pick how to configure the resolver. Pure. */
export function planResolver(
  host: ResolverHost,
  o: { iface: string; server: string; domain: string; previous?: string | null },
): ResolverPlan {
  if (host.resolvectl) return { kind: 'resolvectl', iface: o.iface, server: o.server, domain: o.domain };
  if (host.netns) {
    return {
      kind: 'netns-resolv',
      netns: host.netns,
      path: `/etc/netns/${host.netns}/resolv.conf`,
      server: o.server,
      domain: o.domain,
      previous: o.previous ?? null,
    };
  }
  return {
    kind: 'manual',
    server: o.server,
    domain: o.domain,
    line: `nameserver ${o.server}   # first in /etc/resolv.conf; or: resolvectl dns ${o.iface} ${o.server} && resolvectl domain ${o.iface} '~${o.domain}'`,
  };
}

/** The resolv.conf we write: the node first, then the nameservers of `previous` (options and search kept). Pure. */
export function resolvConfFor(server: string, domain: string, previous: string | null): string {
  const kept = (previous ?? '')
    .split('\n')
    .filter((l) => /^\s*(nameserver|options|search|domain)\s/.test(l))
    .filter((l) => !new RegExp(`^\\s*nameserver\\s+${server.replace(/\./g, '\\.')}\\s*$`).test(l));
  return [
    `# written by \`form formnet up\`: ${domain} through the formnet DNS at ${server}; removed by \`form formnet down\``,
    `nameserver ${server}`,
    ...kept,
    '',
  ].join('\n');
}

/** What this machine offers: resolvectl with a running systemd-resolved, and the named namespace we are in. */
export async function probeResolver(): Promise<ResolverHost> {
  const resolvectl =
    spawnSync('sh', ['-c', 'command -v resolvectl'], { stdio: 'ignore' }).status === 0 &&
    (await tryRun('resolvectl', ['status'], { timeoutMs: 3_000 }));
  const ns = (await run('ip', ['netns', 'identify', String(process.pid)]).catch(() => '')).trim().split('\n')[0];
  return { resolvectl, netns: ns || undefined };
}

/**
 * Configure the resolver as planned (for `resolvectl`, the interface must be up). Returns the plan
 * actually used: a failing `resolvectl` falls back to the next way.
 */
export async function applyResolver(host: ResolverHost, plan: ResolverPlan): Promise<ResolverPlan> {
  if (plan.kind === 'resolvectl') {
    try {
      await run('resolvectl', ['dns', plan.iface, plan.server]);
      await run('resolvectl', ['domain', plan.iface, `~${plan.domain}`]);
      return plan;
    } catch {
      return applyResolver({ ...host, resolvectl: false }, planResolver({ ...host, resolvectl: false }, plan));
    }
  }
  if (plan.kind === 'netns-resolv') {
    let previous = plan.previous;
    if (previous === null && existsSync(plan.path)) {
      const text = readFileSync(plan.path, 'utf8');
      // Ours from an earlier `up` is not "previous": keep what that one saved.
      if (!text.startsWith('# written by `form formnet up`')) previous = text;
    }
    const base = previous ?? (existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf', 'utf8') : '');
    await mkdir(dirname(plan.path), { recursive: true });
    await writeFile(plan.path, resolvConfFor(plan.server, plan.domain, base));
    return { ...plan, previous };
  }
  return plan;
}

/** Undo `applyResolver` (resolvectl forgets per-interface settings when the interface goes). */
export async function removeResolver(plan: ResolverPlan | undefined): Promise<void> {
  if (!plan) return;
  if (plan.kind === 'resolvectl') {
    await tryRun('resolvectl', ['revert', plan.iface]);
    return;
  }
  if (plan.kind === 'netns-resolv') {
    const text = existsSync(plan.path) ? readFileSync(plan.path, 'utf8') : '';
    if (!text.startsWith('# written by `form formnet up`')) return; // someone else's since: leave it
    if (plan.previous !== null) await writeFile(plan.path, plan.previous);
    else await rm(plan.path, { force: true });
  }
}
