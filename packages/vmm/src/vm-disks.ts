// A VM's disks while it has no process (action replace-disk): its root disk replaced by one another VM
// committed (a revision), and its data disk carried to the instance's next VM. Where and in what form
// the disks live stays the VMM's (the driver's `paths`, `replaceDisk`).
import { existsSync, renameSync, rmSync } from 'node:fs';
import type { VmRecord, VmView } from './types.ts';
import type { VmContext } from './vm-context.ts';

/**
 * Make a VM that has no process (created, stopped, crashed) boot `image` next time: a disk another
 * VM of the same base committed (`commit`; the node fetches revisions from peers). The driver checks
 * it and swaps it in for the VM's root disk (it owns where that lives); a refused image leaves the
 * disk as it was. 409 VM_BAD_STATE in any other state.
 */
export async function replaceRootDisk(ctx: VmContext, rec: VmRecord, image: string): Promise<VmView> {
  const id = rec.id;
  await ctx.o.driver.replaceDisk(rec.driver, image);
  rec.updatedAt = new Date().toISOString();
  ctx.save(rec);
  ctx.log.info({ id, image }, 'vm disk replaced');
  return ctx.view(rec);
}

/**
 * Move the data disk of a VM that has no process (created, stopped, crashed) to `dest`, for the next
 * VM of the same instance (a rolling update keeps `/data`; same node, a rename: nothing is copied).
 * False when the VM has no data disk. The VM boots next without one.
 */
export async function takeDataDisk(ctx: VmContext, rec: VmRecord, dest: string): Promise<boolean> {
  const id = rec.id;
  const from = rec.driver.paths.data;
  if (!from || !existsSync(from)) return false;
  renameSync(from, dest);
  ctx.log.info({ id, dest }, 'vm data disk taken');
  return true;
}

/**
 * Put a data disk taken from an earlier VM (`takeDataDisk`) in place of this VM's empty one before
 * it boots (created, stopped, crashed). A VM without a data disk gets none: `src` is removed (nothing
 * would attach it) and the answer is false.
 */
export async function putDataDisk(ctx: VmContext, rec: VmRecord, src: string): Promise<boolean> {
  const id = rec.id;
  const to = rec.driver.paths.data;
  if (!existsSync(src)) return false;
  if (!to || !existsSync(to)) {
    rmSync(src, { force: true });
    return false;
  }
  renameSync(src, to);
  ctx.log.info({ id, src }, 'vm data disk put in place');
  return true;
}
