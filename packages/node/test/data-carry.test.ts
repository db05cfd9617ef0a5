// A rolling update keeps a replica's data disk (data-carry.ts): the old VM's data disk is moved (same
// file, same inode) into the new VM through the VMM (`takeDataDisk` / `putDataDisk`: the node does not
// know where a VM's disks live); a VM without a data disk gets none. On the memory driver (no QEMU).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import type { VmManager } from '@formation/vmm';
import { memoryFormpack, memoryVmManager } from '@formation/vmm/memory';
import { carryPath, hasKeptDataDisk, keepDataDisk, restoreDataDisk } from '../src/data-carry.ts';

const ID = 'a'.repeat(32);
let dir: string;
let vmm: VmManager;
let formpack: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'form-carry-'));
  formpack = memoryFormpack(join(dir, 'formpacks'));
  vmm = await memoryVmManager(dir, join(dir, 'formpacks'), dir, createLogger('silent'));
});
after(async () => {
  await vmm.destroyAll();
  await vmm.close({ stopVms: true });
  rmSync(dir, { recursive: true, force: true });
});

/** The VM's data disk file, as the VMM keeps it (only to look at it here). */
const dataOf = (vmId: string): string => {
  const f = ['data.json', 'data.qcow2'].map((n) => join(dir, 'vms', vmId, 'qemu', n)).find((p) => existsSync(p));
  assert.ok(f, `VM ${vmId} has a data disk`);
  return f;
};

test('the old VM’s data disk moves into the new VM (the same file); a running VM keeps its own', async () => {
  const old = await vmm.create({ formpack, name: 'old', dataDiskMiB: 64 });
  await assert.rejects(keepDataDisk(vmm, dir, old.id, ID), (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE');
  await vmm.stop(old.id);
  const ino = statSync(dataOf(old.id)).ino;
  const before = readFileSync(dataOf(old.id));
  assert.equal(await keepDataDisk(vmm, dir, old.id, ID), true);
  assert.equal(hasKeptDataDisk(dir, ID), true);
  await vmm.destroy(old.id);

  const next = await vmm.create({ formpack, name: 'new', dataDiskMiB: 64, start: false });
  assert.equal(await restoreDataDisk(vmm, dir, next.id, ID), true);
  assert.equal(statSync(dataOf(next.id)).ino, ino);
  assert.deepEqual(readFileSync(dataOf(next.id)), before);
  assert.equal(hasKeptDataDisk(dir, ID), false);
  await vmm.start(next.id);
  await vmm.destroy(next.id);
});

test('nothing to keep without a data disk; a new VM without one drops the kept disk; ids are checked', async () => {
  const none = await vmm.create({ formpack, name: 'none', dataDiskMiB: 0, start: false });
  assert.equal(await keepDataDisk(vmm, dir, none.id, ID), false);
  assert.equal(hasKeptDataDisk(dir, ID), false);

  const old = await vmm.create({ formpack, name: 'old2', dataDiskMiB: 64, start: false });
  assert.equal(await keepDataDisk(vmm, dir, old.id, ID), true);
  assert.equal(await restoreDataDisk(vmm, dir, none.id, ID), false);
  assert.equal(hasKeptDataDisk(dir, ID), false, 'dropped: nothing would attach it');
  assert.equal(await restoreDataDisk(vmm, dir, none.id, ID), false, 'nothing kept');
  assert.equal(hasKeptDataDisk(undefined, ID), false);
  assert.throws(() => carryPath(dir, '../../etc'), /not an instance id/);
  assert.ok(!existsSync(carryPath(dir, ID)));
});
