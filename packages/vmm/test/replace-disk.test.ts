// The VMM owns its disk layout (issue 21): a node applies a fetched revision with
// `VmManager.replaceDisk(id, file)`, never by writing into the VM's directory. The QEMU side
// (`replaceOverlay`, qemu-img only, no VM) refuses a hostile qcow2 and re-bases an honest one onto the
// VM's own base; the manager side runs on the memory driver: states, a refused image, and a VM that
// boots another VM's committed disk.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import type { VmManager } from '../src/manager.ts';
import { memoryVmManager } from '../src/memory-vmm.ts';
import { replaceOverlay } from '../src/qemu-disks.ts';
import { memoryFormpack } from './memory-formpack.ts';

const code = (err: unknown): string => (isFormError(err) ? err.code : `not a FormError: ${(err as Error).message}`);

describe('replaceOverlay (qemu-img, no VM)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fvmm-rev-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const img = (...args: string[]): void => void execFileSync('qemu-img', args, { stdio: 'ignore' });
  const hostFile = join(dir, 'host-disk');
  writeFileSync(hostFile, Buffer.alloc(2 ** 20, 0x42));
  // What a hostile committing node serves: a qcow2 whose data lives in a host file.
  const hostile = join(dir, 'hostile.qcow2');
  img('create', '-q', '-f', 'qcow2', '-o', `data_file=${hostFile}`, hostile, '1M');
  // What an honest one serves: an overlay naming the committing node's base path.
  const base = join(dir, 'base.qcow2');
  img('create', '-q', '-f', 'qcow2', base, '4M');
  const honest = join(dir, 'honest.qcow2');
  img('create', '-q', '-f', 'qcow2', '-b', '/elsewhere/formpacks/x/disk.qcow2', '-F', 'qcow2', '-u', honest, '4M');

  test('a hostile revision is refused and the disk is left as it was', async () => {
    const disk = join(dir, 'vm-disk.qcow2');
    img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', disk);
    const before = readFileSync(disk);
    await assert.rejects(replaceOverlay(disk, hostile), (err: unknown) => code(err) === 'VM_IMAGE_UNSAFE');
    assert.deepEqual(readFileSync(disk), before);
  });

  test('an honest revision replaces the overlay, backed by this VM’s own base', async () => {
    const disk = join(dir, 'vm-disk2.qcow2');
    img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', disk);
    await replaceOverlay(disk, honest);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', disk], { encoding: 'utf8' }));
    assert.equal(info['full-backing-filename'], base);
  });
});

describe('VmManager.replaceDisk (memory driver)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fvmm-repl-'));
  const logger = createLogger('silent');
  let vmm: VmManager;
  let formpack: string;
  before(async () => {
    formpack = memoryFormpack(`${dir}/formpacks`);
    vmm = await memoryVmManager(dir, `${dir}/formpacks`, `${dir}/cache`, logger);
  });
  after(async () => {
    await vmm.destroyAll();
    await vmm.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a new VM boots the disk another VM committed; a running VM refuses; a foreign image changes nothing', async () => {
    const a = await vmm.create({ formpack, name: 'a' });
    await vmm.waitReady(a.id, 5000);
    await vmm.exec(a.id, '/bin/sh', ['-c', 'echo committed > /srv/mark']);
    const rev = await vmm.commit(a.id);

    // Running: the state machine refuses, naming the state.
    await assert.rejects(vmm.replaceDisk(a.id, rev.file), (err: unknown) => {
      assert.equal(code(err), 'VM_BAD_STATE');
      assert.match((err as Error).message, /Cannot replace-disk VM .*: it is running/);
      return true;
    });

    const b = await vmm.create({ formpack, name: 'b', start: false });
    assert.equal(b.state, 'created');
    // Not a disk of this driver: refused, and B still boots its own disk.
    const junk = join(dir, 'junk.qcow2');
    writeFileSync(junk, 'QFI\xfb not a disk');
    await assert.rejects(vmm.replaceDisk(b.id, junk), (err: unknown) => code(err) === 'VM_IMAGE_INVALID');
    assert.equal((await vmm.replaceDisk(b.id, rev.file)).state, 'created');
    await vmm.start(b.id);
    await vmm.waitReady(b.id, 5000);
    assert.equal((await vmm.exec(b.id, '/bin/sh', ['-c', 'cat /srv/mark'])).stdout, 'committed\n');

    // Stopped: allowed again.
    await vmm.stop(b.id);
    assert.equal((await vmm.replaceDisk(b.id, rev.file)).state, 'stopped');
  });
});
