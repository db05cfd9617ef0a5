// A VM's process ended without the VMM asking (the driver's onExit): the record says how (guest
// poweroff: stopped; anything else: crashed, with the reason), and a crashed VM is booted again when
// its restart policy says so.
import type { ExitInfo } from './driver.ts';
import { hasProcess } from './state-machine.ts';
import type { VmRecord } from './types.ts';
import type { VmContext } from './vm-context.ts';

/** Settle `rec` after its process ended (`closed`: the VMM is shutting down, nothing is restarted). */
export async function settleExit(ctx: VmContext, rec: VmRecord, info: ExitInfo, closed: boolean): Promise<void> {
  if (!hasProcess(rec.state)) return;
  const at = new Date().toISOString();
  rec.lastExit = { kind: info.kind, reason: info.reason, at };
  rec.ready = false;
  ctx.dropHealth(rec.id);
  if (info.kind === 'guest-poweroff') ctx.setState(rec, 'stopped', info.reason);
  else ctx.setState(rec, 'crashed', info.reason);
  ctx.save(rec);
  ctx.wakeWaiters(rec.id);
  const max = ctx.o.maxRestarts ?? 3;
  if (rec.state === 'crashed' && rec.restartPolicy === 'on-failure' && rec.restarts < max && !closed) {
    rec.restarts++;
    ctx.log.warn({ id: rec.id, restarts: rec.restarts }, 'restarting vm per policy');
    try {
      await ctx.boot(rec, `restarted by policy after: ${info.reason}`);
    } catch (err) {
      ctx.setState(rec, 'crashed', `restart by policy failed: ${(err as Error).message}`);
      ctx.save(rec);
    }
  }
}
