// After a VMM restart: a VM record loaded from disk is matched with what runs. A suspended VM's
// connections are held again; guest memory an unfinished suspend or wake left behind is removed; a VM
// that had a process is re-attached to it (verified by the driver, never a stale pid) or marked crashed.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hasProcess, type VmState } from './state-machine.ts';
import type { VmRecord } from './types.ts';
import type { VmContext } from './vm-context.ts';
import { holdWhileSuspended } from './vm-suspend.ts';

/**
 * What a VMM restart does with a VM that had a process, from the state its record was left in and what
 * the driver found (pure):
 * - `crashed`: the process is gone.
 * - `reboot`: found paused in the middle of a boot or a restore (`starting`, `restoring`): its memory
 *   may be only partly loaded (a template restore is an incoming migration; QEMU waits paused), so it
 *   is never resumed. Its process is ended and the VM marked crashed, to be booted again (by the node's
 *   controller, or its restart policy). Kept paused, it was a VM nobody would ever resume: its replica
 *   stayed `starting` for good (CI: a daemon killed mid-deploy, a standby-less template restore).
 * - `resume`: found paused while the VMM was saving it (`snapshotting`, `committing`, `suspending`):
 *   QEMU paused a whole guest to save it; the save was abandoned, so the guest runs on.
 * - `keep`: as found.
 */
export function reattachPlan(
  before: VmState,
  found: 'running' | 'paused' | 'gone',
): 'crashed' | 'reboot' | 'resume' | 'keep' {
  if (found === 'gone') return 'crashed';
  if (found !== 'paused') return 'keep';
  if (before === 'starting' || before === 'restoring') return 'reboot';
  if (before === 'snapshotting' || before === 'committing' || before === 'suspending') return 'resume';
  return 'keep';
}

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
  const todo = reattachPlan(before, found);
  if (todo === 'reboot') {
    const pid = rec.driver.pid;
    why = `its ${before === 'starting' ? 'boot' : 'restore'} was cut short by a VMM restart (found paused, pid ${pid}): ended, to be booted again`;
    await ctx.o.driver.stop(rec.driver, { force: true });
    ctx.log.warn({ id: rec.id, pid, before }, 'vm found paused mid-boot after a VMM restart: ended');
  }
  if (todo === 'crashed' || todo === 'reboot') {
    ctx.setState(rec, 'crashed', why);
    rec.ready = false;
    rec.lastExit = { kind: 'killed', reason: rec.stateReason, at: new Date().toISOString() };
  } else {
    if (todo === 'resume') await ctx.o.driver.resume(rec.driver);
    const state: VmState = todo === 'resume' || found === 'running' ? 'running' : 'paused';
    const how = todo === 'resume' ? `; resumed: the ${before} it was paused for was abandoned` : '';
    ctx.setState(rec, state, `re-attached after a VMM restart (pid ${rec.driver.pid})${how}`);
    // The firewall was re-installed empty: its port guard (address, egress) before anything else.
    await ctx.o.network.guard(rec.network);
  }
  ctx.o.store.save(rec);
}
