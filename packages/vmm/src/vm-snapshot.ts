// Snapshots of a running VM (memory + a frozen copy of its disk, under `<vm dir>/snapshots/<id>`) and
// restoring one into the VM (it runs from there).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import { hasProcess } from './state-machine.ts';
import type { SnapshotRecord, VmRecord, VmView } from './types.ts';
import type { VmContext } from './vm-context.ts';
import { restoredRunning } from './vm-runtime.ts';

/** Take a snapshot; the VM keeps (or returns to) its state. */
export async function snapshotVm(ctx: VmContext, rec: VmRecord): Promise<Omit<SnapshotRecord, 'dir'>> {
  const id = rec.id;
  const prev = rec.state;
  const snapId = `snap-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(2).toString('hex')}`;
  const dir = join(ctx.o.store.vmDir(id), 'snapshots', snapId);
  ctx.setState(rec, 'snapshotting', `snapshot ${snapId}`);
  try {
    const info = await ctx.o.driver.snapshot(rec.driver, dir);
    const s: SnapshotRecord = {
      id: snapId,
      createdAt: new Date().toISOString(),
      dir,
      memoryBytes: info.memoryBytes,
      diskBytes: info.diskBytes,
      totalMs: info.totalMs,
      ready: rec.ready,
    };
    rec.snapshots.push(s);
    const { dir: _d, ...pub } = s;
    return pub;
  } finally {
    // The process may have died meanwhile (the exit handler runs after us and settles it).
    ctx.setState(rec, prev, `${prev} (after snapshot)`);
    ctx.save(rec);
  }
}

/** Restore snapshot `snapshotId` (the latest when undefined) into the VM and run it. */
export async function restoreVm(
  ctx: VmContext,
  rec: VmRecord,
  snapshotId: string | undefined,
  actor: string | undefined,
): Promise<VmView> {
  const id = rec.id;
  const snap = snapshotId ? rec.snapshots.find((s) => s.id === snapshotId) : rec.snapshots.at(-1);
  if (!snap) {
    throw new FormError(
      'NOT_FOUND',
      `Cannot restore VM ${id}: ${snapshotId ? `no snapshot ${snapshotId}` : 'it has no snapshot'}`,
    );
  }
  if (!hasProcess(rec.state)) await ctx.checkFits(rec);
  await ctx.o.network.attach(rec.network);
  const prev = rec.state;
  ctx.setState(rec, 'restoring', `restoring ${snap.id}`);
  ctx.save(rec);
  try {
    await ctx.o.driver.restore(rec.driver, snap.dir);
  } catch (err) {
    const alive = (await ctx.o.driver.status(rec.driver).catch(() => 'stopped' as const)) !== 'stopped';
    ctx.setState(rec, alive ? prev : 'stopped', `restore failed: ${(err as Error).message}`);
    ctx.save(rec);
    throw err;
  }
  restoredRunning(rec, `restored from ${snap.id}${actor ? ` by ${actor}` : ''}`, snap.ready);
  ctx.save(rec);
  if (snap.ready) ctx.wakeWaiters(rec.id);
  return ctx.view(rec);
}
