// The guest health check: one probe over the agent, the entrypoint state file the guest init writes
// (pure), and when a dead entrypoint calls for action (pure).
import type { GuestAgent } from './driver.ts';
import type { VmHealth } from './types.ts';

/**
 * `/run/form/entrypoint.state` (`running <pid> <restarts> [<started uptime>]` | `exited <code> <restarts>`)
 * as health. With the guest's uptime now (`/proc/uptime`), a running entrypoint says how long it has run
 * (`runningForMs`): it may start before the VM reports ready.
 *
 * @example
 * parseEntrypointState('running 42 0 10.50', '13.00 1.2') // { status: 'running', pid: 42, restarts: 0, runningForMs: 2500 }
 */
export function parseEntrypointState(text: string, uptime?: string): NonNullable<VmHealth['entrypoint']> {
  const s = text.trim().split(/\s+/);
  if (s[0] === 'running') {
    const ep: Extract<VmHealth['entrypoint'], { status: 'running' }> = {
      status: 'running',
      pid: Number(s[1]),
      restarts: Number(s[2] ?? 0),
    };
    const started = Number(s[3]);
    const now = Number(uptime?.trim().split(/\s+/)[0]);
    if (s[3] !== undefined && Number.isFinite(started) && Number.isFinite(now) && uptime?.trim()) {
      ep.runningForMs = Math.max(0, Math.round((now - started) * 1000));
    }
    return ep;
  }
  if (s[0] === 'exited') return { status: 'exited', code: Number(s[1]), restarts: Number(s[2] ?? 0) };
  return { status: 'unknown', detail: s.join(' ') };
}

/**
 * The guest init restarts its entrypoint itself; "exited" twice in a row with the same restart count
 * means it gave up (and the VMM has not acted on it yet).
 */
export function entrypointGaveUp(prev: VmHealth | undefined, h: VmHealth): boolean {
  const ep = h.entrypoint;
  const pep = prev?.entrypoint;
  return ep?.status === 'exited' && pep?.status === 'exited' && pep.restarts === ep.restarts && !prev?.acted;
}

/** One health check of a guest: its agent answers a ping, and the state of its entrypoint. */
export async function probeHealth(ga: GuestAgent): Promise<VmHealth> {
  const h: VmHealth = { checkedAt: new Date().toISOString(), agent: 'ok' };
  try {
    await ga.ping(2000);
    try {
      const state = await ga.readFile('/run/form/entrypoint.state', 256, 2000);
      const uptime = state.startsWith('running') ? await ga.readFile('/proc/uptime', 64, 2000).catch(() => '') : '';
      h.entrypoint = parseEntrypointState(state, uptime);
    } catch (err) {
      h.entrypoint = { status: 'unknown', detail: (err as Error).message };
    }
  } catch (err) {
    h.agent = 'unreachable';
    h.agentError = (err as Error).message;
  }
  return h;
}
