// Committing a VM's disk as a revision (`form commit`): the overlay copied while the guest's
// filesystems are frozen and the VM paused, then hashed and kept under its revision name.
import { copyFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import type { DriverVm, GuestAgent, HypervisorDriver } from './driver.ts';
import type { RevisionRecord } from './types.ts';

/**
 * Copy the VM's overlay to `tmp` with the guest's filesystems frozen and the VM paused; resume, thaw
 * and `settle` (the manager's state) whatever fails. A full disk is DISK_FULL (the VM runs on unchanged).
 */
export async function copyDiskFrozen(o: {
  id: string;
  driver: HypervisorDriver;
  vm: DriverVm;
  agent: GuestAgent;
  tmp: string;
  log: Logger;
  settle: () => void;
}): Promise<void> {
  let frozen = false;
  let paused = false;
  try {
    await o.agent.fsfreeze(true);
    frozen = true;
    await o.driver.pause(o.vm);
    paused = true;
    copyFileSync(o.vm.paths.disk, o.tmp);
  } catch (err) {
    rmSync(o.tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC') {
      throw new FormError('DISK_FULL', `Cannot commit VM ${o.id}: the disk of the node is full`, {
        hint: 'Free space on the node; the VM keeps running unchanged.',
      });
    }
    throw err;
  } finally {
    if (paused)
      await o.driver.resume(o.vm).catch((err: unknown) => o.log.error({ err, id: o.id }, 'resume after commit failed'));
    if (frozen)
      await o.agent.fsfreeze(false).catch((err: unknown) => o.log.error({ err, id: o.id }, 'thaw after commit failed'));
    o.settle();
  }
}

/** Hash the copy at `tmp`, move it to `file` and describe it as revision `revision`. */
export async function keepRevision(
  tmp: string,
  file: string,
  revision: number,
  frozenMs: number,
): Promise<RevisionRecord> {
  const sha256 = await sha256File(tmp);
  renameSync(tmp, file);
  const r: RevisionRecord = {
    revision,
    createdAt: new Date().toISOString(),
    sha256,
    bytes: statSync(file).size,
    file,
    frozenMs,
  };
  return r;
}
