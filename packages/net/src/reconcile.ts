import type { Logger } from '@formation/service';
import { run } from './exec.ts';
import { formatCidr, parseCidr } from './ipam.ts';
import type { WgPeer, WireGuardDevice } from './wireguard.ts';

export interface PeerDiff {
  add: WgPeer[];
  update: WgPeer[];
  /** Public keys to remove. */
  remove: string[];
}

function normCidrs(list: readonly string[]): string[] {
  return [...new Set(list.map((c) => formatCidr(parseCidr(c))))].sort();
}

/**
 * What to change so the interface's peers become `desired`. Pure. A desired peer without an endpoint
 * keeps whatever endpoint WireGuard learned from its handshakes (roaming), so it is not an update.
 */
export function diffPeers(desired: readonly WgPeer[], actual: readonly WgPeer[]): PeerDiff {
  const have = new Map(actual.map((p) => [p.publicKey, p]));
  const want = new Map(desired.map((p) => [p.publicKey, p]));
  const diff: PeerDiff = { add: [], update: [], remove: [] };
  for (const [k, p] of want) {
    const a = have.get(k);
    if (!a) {
      diff.add.push(p);
      continue;
    }
    const sameIps = normCidrs(p.allowedIps).join() === normCidrs(a.allowedIps).join();
    const sameEndpoint = !p.endpoint || p.endpoint === a.endpoint;
    const sameKa = (p.persistentKeepalive || 0) === (a.persistentKeepalive || 0);
    if (!sameIps || !sameEndpoint || !sameKa) diff.update.push(p);
  }
  for (const k of have.keys()) if (!want.has(k)) diff.remove.push(k);
  return diff;
}

export interface RouteDiff {
  add: string[];
  remove: string[];
}

/** Routes via the interface: exactly the union of the peers' allowed IPs. Pure. */
export function diffRoutes(desiredPeers: readonly WgPeer[], actualRoutes: readonly string[]): RouteDiff {
  const want = new Set(normCidrs(desiredPeers.flatMap((p) => p.allowedIps)));
  const have = new Set(normCidrs(actualRoutes));
  return { add: [...want].filter((r) => !have.has(r)), remove: [...have].filter((r) => !want.has(r)) };
}

/** Destinations routed via `dev` (ignoring the kernel's own link routes). */
export async function listRoutes(dev: string, netns?: string): Promise<string[]> {
  const out = await run('ip', ['-j', '-4', 'route', 'show', 'dev', dev], { netns });
  const rows = JSON.parse(out || '[]') as { dst: string; protocol?: string }[];
  return rows.filter((r) => r.protocol !== 'kernel').map((r) => (r.dst.includes('/') ? r.dst : `${r.dst}/32`));
}

export interface ReconcileResult {
  peers: PeerDiff;
  routes: RouteDiff;
}

/**
 * Make `dev`'s peers and routes match `desired`, changing only what differs (no restart; existing
 * sessions continue). Idempotent: a second call with the same input changes nothing.
 */
export async function reconcile(
  dev: WireGuardDevice,
  desired: readonly WgPeer[],
  logger?: Logger,
): Promise<ReconcileResult> {
  const actual = await dev.show();
  const peers = diffPeers(desired, actual.peers);
  await dev.setPeers([...peers.add, ...peers.update], peers.remove);
  const routes = diffRoutes(desired, await listRoutes(dev.name, dev.netns));
  for (const r of routes.remove) await run('ip', ['route', 'del', r, 'dev', dev.name], { netns: dev.netns });
  for (const r of routes.add) await run('ip', ['route', 'replace', r, 'dev', dev.name], { netns: dev.netns });
  const changed =
    peers.add.length + peers.update.length + peers.remove.length + routes.add.length + routes.remove.length;
  if (changed) {
    logger?.info(
      { iface: dev.name, add: peers.add.length, update: peers.update.length, remove: peers.remove.length, routes },
      'formnet peers reconciled',
    );
  }
  return { peers, routes };
}
