// After a VMM restart: a VM record loaded from disk is matched with what runs. A suspended VM's
// connections are held again; guest memory an unfinished suspend or wake left behind is removed; a VM
// that had a process is re-attached to it (verified by the driver, never a stale pid) or marked crashed.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hasProcess } from './state-machine.ts';
import type { VmRecord } from './types.ts';
import type { VmContext } from './vm-context.ts';
import { holdWhileSuspended } from './vm-suspend.ts';

/** Settle one loaded record (the manager holds it already); persists it when it changed. */
export async function reattachVm(ctx: VmContext, rec: VmRecord): Promise<void> {
  if (rec.state === 'suspended') await holdWhileSuspended(ctx, rec);
  else if (rec.suspended || existsSync(join(ctx.o.store.vmDir(rec.id), 'suspend'))) {
    // A suspend or a wake the VMM did not finish (it stopped meanwhile): guest memory left on disk goes.
    rmSync(join(ctx.o.store.vmDir(rec.id), 'suspend'), { recursive: true, force: true });
    rec.suspended = undefined;
    ctx.o.store.save(rec);
  }
  if (!hasProcess(rec.state)) return;
  const before = rec.state;
  let found: 'running' | 'paused' | 'gone' = 'gone';
  let why = `QEMU process was gone when the VMM restarted (last state ${before})`;
  try {
    found = await ctx.o.driver.recover(rec.driver);
  } catch (err) {
    why = (err as Error).message;
    ctx.log.warn({ id: rec.id, err: why }, 'recover failed');
  }
  if (found === 'gone') {
    ctx.setState(rec, 'crashed', why);
    rec.ready = false;
    rec.lastExit = { kind: 'killed', reason: rec.stateReason, at: new Date().toISOString() };
  } else {
    ctx.setState(rec, found, `re-attached after a VMM restart (pid ${rec.driver.pid})`);
    // The firewall was re-installed empty: its port guard (address, egress) before anything else.
    await ctx.o.network.guard(rec.network);
  }
  ctx.o.store.save(rec);
}
