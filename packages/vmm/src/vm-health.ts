// The guest health check: one probe over the agent, the entrypoint state file the guest init writes
// (pure), and when a dead entrypoint calls for action (pure).
import type { GuestAgent } from './driver.ts';
import type { VmHealth } from './types.ts';

/** `/run/form/entrypoint.state` (`running <pid> <restarts>` | `exited <code> <restarts>`) as health. */
export function parseEntrypointState(text: string): NonNullable<VmHealth['entrypoint']> {
  const s = text.trim().split(/\s+/);
  if (s[0] === 'running') return { status: 'running', pid: Number(s[1]), restarts: Number(s[2] ?? 0) };
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
      h.entrypoint = parseEntrypointState(await ga.readFile('/run/form/entrypoint.state', 256, 2000));
    } catch (err) {
      h.entrypoint = { status: 'unknown', detail: (err as Error).message };
    }
  } catch (err) {
    h.agent = 'unreachable';
    h.agentError = (err as Error).message;
  }
  return h;
}
