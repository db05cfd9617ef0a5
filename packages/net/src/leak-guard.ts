import { run, tryRun } from './exec.ts';
import { FORMNET_CIDR } from './ipam.ts';

/**
 * The leak guard: an `unreachable` route for the whole formnet range. Routes to addresses some peer
 * holds are more specific and win; anything else in formnet is refused locally (EHOSTUNREACH, "No
 * route to host", at once) instead of leaking to the default gateway.
 *
 * @example await installLeakGuard('n1'); // ip -n n1 route replace unreachable 10.128.0.0/9
 */
export async function installLeakGuard(netns?: string, cidr: string = FORMNET_CIDR): Promise<void> {
  await run('ip', ['route', 'replace', 'unreachable', cidr], { netns });
}

export async function removeLeakGuard(netns?: string, cidr: string = FORMNET_CIDR): Promise<void> {
  await tryRun('ip', ['route', 'del', 'unreachable', cidr], { netns });
}

/** How the kernel would route `ip`: `{ type: 'unreachable' }`, or the device it leaves by. */
export async function routeGet(ip: string, netns?: string): Promise<{ type: string; dev?: string }> {
  try {
    const out = await run('ip', ['-j', 'route', 'get', ip], { netns });
    const r = (JSON.parse(out) as { type?: string; dev?: string }[])[0] ?? {};
    return { type: r.type ?? 'unicast', ...(r.dev ? { dev: r.dev } : {}) };
  } catch (err) {
    // `ip route get` exits non-zero ("No route to host") when an `unreachable` route matches.
    if (/unreachable|No route to host/i.test((err as Error).message)) return { type: 'unreachable' };
    throw err;
  }
}

/**
 * Remove the leak guard unless some interface still routes part of formnet here (another session or
 * a permanent membership in this namespace still needs it).
 */
export async function removeLeakGuardIfUnused(netns?: string, cidr: string = FORMNET_CIDR): Promise<boolean> {
  const out = await run('ip', ['-j', '-4', 'route', 'show', 'root', cidr], { netns }).catch(() => '[]');
  const rows = JSON.parse(out || '[]') as Array<{ type?: string; dev?: string }>;
  if (rows.some((r) => r.dev && r.type !== 'unreachable')) return false;
  await removeLeakGuard(netns, cidr);
  return true;
}
