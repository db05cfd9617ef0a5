// Power actions on a VM: start (or resume a suspended one), stop (graceful, forced after the
// timeout), restart, pause and resume. Each runs inside the VM's lock once the state machine allowed it.
import { FormError } from '@formation/interface';
import type { VmRecord, VmView } from './types.ts';
import type { VmContext } from './vm-context.ts';
import { dropSuspended, wakeFromDisk } from './vm-suspend.ts';

/** Start a stopped, created or crashed VM (never a second process for it), or resume a suspended one. */
export async function startVm(ctx: VmContext, rec: VmRecord, actor: string | undefined): Promise<VmView> {
  const id = rec.id;
  if (rec.state === 'suspended') {
    await wakeFromDisk(ctx, rec, actor ? `resumed from disk by ${actor}` : 'resumed from disk');
    return ctx.view(rec);
  }
  // Never a duplicate: a QEMU still alive for this VM is adopted, not started twice.
  // (recover throws when a verified QEMU of this VM lives but does not answer: refuse, never duplicate)
  const found = await ctx.o.driver.recover(rec.driver);
  if (found !== 'gone') {
    ctx.setState(rec, found, 'found its QEMU process still alive');
    ctx.save(rec);
    throw new FormError('VM_BAD_STATE', `Cannot start VM ${id}: it is ${found}`);
  }
  await ctx.boot(rec, actor ? `started by ${actor}` : 'started');
  return ctx.view(rec);
}

/** Stop: a clean poweroff, forced after `timeoutMs` (at once with `force` or when paused); a suspended VM's image is dropped. */
export async function stopVm(
  ctx: VmContext,
  rec: VmRecord,
  actor: string | undefined,
  opts: { force?: boolean; timeoutMs?: number },
): Promise<VmView> {
  if (rec.state === 'suspended') {
    // Nothing runs: stopping discards the memory image (the disk stays; the next start boots).
    await dropSuspended(ctx, rec);
    ctx.setState(rec, 'stopped', `suspended state discarded${actor ? ` by ${actor}` : ''}`);
    ctx.save(rec);
    return ctx.view(rec);
  }
  const prev = rec.state;
  ctx.setState(rec, 'stopping', 'stopping');
  ctx.save(rec);
  try {
    // A paused guest cannot power itself off: no point waiting for it.
    const r = await ctx.o.driver.stop(rec.driver, {
      timeoutMs: opts.timeoutMs ?? ctx.o.stopTimeoutMs ?? 10_000,
      force: opts.force || prev === 'paused',
    });
    ctx.setState(
      rec,
      'stopped',
      `${r.forced ? (opts.force || prev === 'paused' ? 'forced stop' : `forced stop (no clean poweroff within ${opts.timeoutMs ?? ctx.o.stopTimeoutMs ?? 10_000} ms)`) : 'clean poweroff'}${actor ? ` by ${actor}` : ''}`,
    );
  } catch (err) {
    ctx.setState(rec, prev, `stop failed: ${(err as Error).message}`);
    throw err;
  } finally {
    rec.ready = false;
    ctx.save(rec);
  }
  return ctx.view(rec);
}

/** Stop (forced when paused) and boot again with the same disk. */
export async function restartVm(ctx: VmContext, rec: VmRecord, actor: string | undefined): Promise<VmView> {
  const wasPaused = rec.state === 'paused';
  ctx.setState(rec, 'stopping', 'restarting');
  await ctx.o.driver.stop(rec.driver, { timeoutMs: ctx.o.stopTimeoutMs ?? 10_000, force: wasPaused });
  ctx.setState(rec, 'stopped', 'restarting');
  await ctx.boot(rec, actor ? `restarted by ${actor}` : 'restarted');
  return ctx.view(rec);
}

export async function pauseVm(ctx: VmContext, rec: VmRecord, actor: string | undefined): Promise<VmView> {
  await ctx.o.driver.pause(rec.driver);
  ctx.setState(rec, 'paused', actor ? `paused by ${actor}` : 'paused');
  ctx.save(rec);
  return ctx.view(rec);
}

/** Resume a paused VM, or a suspended one from its image. */
export async function resumeVm(ctx: VmContext, rec: VmRecord, actor: string | undefined): Promise<VmView> {
  if (rec.state === 'suspended') {
    await wakeFromDisk(ctx, rec, actor ? `resumed from disk by ${actor}` : 'resumed from disk');
    return ctx.view(rec);
  }
  await ctx.o.driver.resume(rec.driver);
  ctx.setState(rec, 'running', actor ? `resumed by ${actor}` : 'resumed');
  ctx.save(rec);
  return ctx.view(rec);
}
