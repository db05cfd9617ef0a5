// Scale to zero: suspend a VM to disk (memory + device state in `<vm dir>/suspend/memory.mig`), resume
// it from there, drop the image, and hold its connections at the wake gate meanwhile (wake-gate.ts).
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { HypervisorDriver } from './driver.ts';
import type { VmRecord, VmView } from './types.ts';
import type { VmContext } from './vm-context.ts';
import { restoredRunning } from './vm-runtime.ts';

/**
 * Suspend to disk (scale to zero): memory + device state saved to `<vm dir>/suspend/memory.mig`
 * (0600; it is guest memory, so it may hold keys of an unlocked /data), the hypervisor process ends,
 * its resources count as free. `resume` (or `start`) brings it back with the same disk and identity.
 */
export async function suspendVm(ctx: VmContext, rec: VmRecord, actor: string | undefined): Promise<VmView> {
  const id = rec.id;
  const prev = rec.state;
  const dir = join(ctx.o.store.vmDir(id), 'suspend');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const wasReady = rec.ready;
  ctx.setState(rec, 'suspending', 'suspending to disk');
  ctx.save(rec);
  // The wake gate holds new connections from before the guest stops: one that arrives while the
  // memory is being saved waits for the wake (wakeOnConnect waits for the suspend to end) instead of
  // reaching a guest that no longer answers (its conntrack entry would never be redirected after).
  await holdWhileSuspended(ctx, rec);
  let info: Awaited<ReturnType<HypervisorDriver['suspend']>>;
  try {
    info = await ctx.o.driver.suspend(rec.driver, join(dir, 'memory.mig'));
  } catch (err) {
    const alive = (await ctx.o.driver.status(rec.driver).catch(() => 'stopped' as const)) !== 'stopped';
    ctx.setState(rec, alive ? prev : 'crashed', `suspend failed: ${(err as Error).message}`);
    ctx.save(rec);
    // still running: connections held meanwhile go to it; else they are closed
    await ctx.gate()?.release(id, alive);
    throw err;
  }
  rec.suspended = {
    file: info.file,
    bytes: info.bytes,
    sha256: info.sha256,
    at: new Date().toISOString(),
    saveMs: info.totalMs,
    ready: wasReady,
  };
  rec.ready = false;
  ctx.dropHealth(id);
  ctx.setState(rec, 'suspended', `suspended to disk${actor ? ` by ${actor}` : ''}`);
  ctx.save(rec);
  ctx.log.info({ id, bytes: info.bytes, ms: info.totalMs }, 'vm suspended to disk');
  return ctx.view(rec);
}

/** Resume a suspended VM from its image (inside the VM's lock). A bad image leaves it suspended. */
export async function wakeFromDisk(ctx: VmContext, rec: VmRecord, why: string): Promise<void> {
  const img = rec.suspended;
  if (!img) throw new FormError('VM_BAD_STATE', `Cannot resume VM ${rec.id}: it has no memory image`);
  await ctx.checkFits(rec);
  await ctx.o.network.attach(rec.network);
  ctx.setState(rec, 'restoring', 'resuming from disk');
  ctx.save(rec);
  const t0 = Date.now();
  try {
    await ctx.o.driver.wake(rec.driver, img.file, img);
  } catch (err) {
    ctx.setState(rec, 'suspended', `resume failed: ${(err as Error).message}`);
    ctx.save(rec);
    throw err;
  }
  rmSync(img.file, { force: true });
  rec.suspended = undefined;
  restoredRunning(rec, why, img.ready);
  ctx.save(rec);
  ctx.log.info({ id: rec.id, ms: Date.now() - t0 }, 'vm resumed from disk');
  await ctx.gate()?.release(rec.id, true);
  ctx.wakeWaiters(rec.id);
}

/** Delete a suspended VM's image and stop holding its connections. */
export async function dropSuspended(ctx: VmContext, rec: VmRecord): Promise<void> {
  if (rec.suspended) rmSync(rec.suspended.file, { force: true });
  rec.suspended = undefined;
  await ctx.gate()?.release(rec.id, false);
}

/** While a VM is suspended (tap mode, wake on connection): hold connections for it and wake it on one. */
export async function holdWhileSuspended(ctx: VmContext, rec: VmRecord): Promise<void> {
  const ip = rec.network.ip.split('/')[0] as string;
  const gate = ctx.gate();
  if (!gate || rec.network.mode !== 'tap') return;
  await gate
    .hold({ id: rec.id, ip, ports: rec.ports ?? [22] }, () => ctx.wakeOnConnect(rec.id))
    .catch((err: unknown) =>
      ctx.log.error(
        { id: rec.id, err: (err as Error).message },
        'wake gate not set: connections fail until it is resumed',
      ),
    );
}
