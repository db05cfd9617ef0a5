// Committing a VM's disk as a revision (`form commit`): the overlay copied while the guest's
// filesystems are frozen and the VM paused, then hashed and kept under its revision name.
import { copyFileSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import type { DriverVm, GuestAgent, HypervisorDriver } from './driver.ts';
import type { RevisionRecord, VmRecord } from './types.ts';
import type { VmContext } from './vm-context.ts';

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

/**
 * Record the VM's disk as a new revision (`form commit`): the guest agent freezes the filesystems
 * (so they are consistent), the VM pauses (so QEMU flushes its own disk caches), the overlay is
 * copied and hashed, then the VM resumes and the guest thaws — whatever fails on the way. The
 * revision files are what replicas fetch; the running disk stays in place.
 */
export async function commitVm(ctx: VmContext, rec: VmRecord): Promise<RevisionRecord> {
  const id = rec.id;
  if (!rec.ready) {
    throw new FormError('VM_BAD_STATE', `Cannot commit VM ${id}: its guest is not ready yet`, {
      hint: 'Wait until the instance reports running.',
    });
  }
  const revs = rec.revisions ?? [];
  const revision = (revs.at(-1)?.revision ?? 0) + 1;
  const dir = join(ctx.o.store.vmDir(id), 'revisions');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `rev-${revision}.qcow2`);
  const tmp = `${file}.tmp`;
  const agent = ctx.o.driver.agent(rec.driver);
  ctx.setState(rec, 'committing', `commit revision ${revision}`);
  const t0 = Date.now();
  await copyDiskFrozen({
    id,
    driver: ctx.o.driver,
    vm: rec.driver,
    agent,
    tmp,
    log: ctx.log,
    settle: () => {
      ctx.setState(rec, 'running', `running (after commit)`);
      ctx.save(rec);
    },
  });
  const r = await keepRevision(tmp, file, revision, Date.now() - t0);
  rec.revisions = [...revs, r];
  ctx.save(rec);
  ctx.log.info({ id, revision, sha256: r.sha256, bytes: r.bytes, frozenMs: r.frozenMs }, 'vm disk committed');
  return r;
}
