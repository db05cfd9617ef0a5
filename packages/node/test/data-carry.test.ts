// A rolling update keeps a replica's data disk (data-carry.ts): the old VM's data.qcow2 is moved (same
// file, same inode) into the new VM's directory; a VM without a data disk gets none.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { carryPath, hasKeptDataDisk, keepDataDisk, restoreDataDisk } from '../src/data-carry.ts';

const ID = 'a'.repeat(32);
const disk = (dir: string, vm: string) => join(dir, 'vms', vm, 'qemu', 'data.qcow2');
const vmWithDisk = (dir: string, vm: string, content: string) => {
  mkdirSync(join(dir, 'vms', vm, 'qemu'), { recursive: true });
  writeFileSync(disk(dir, vm), content);
};

test('the old VM’s data disk moves into the new VM (the same file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-carry-'));
  try {
    vmWithDisk(dir, 'vm-old', 'old data');
    const ino = statSync(disk(dir, 'vm-old')).ino;
    assert.equal(keepDataDisk(dir, 'vm-old', ID), true);
    assert.equal(hasKeptDataDisk(dir, ID), true);
    vmWithDisk(dir, 'vm-new', 'empty');
    assert.equal(restoreDataDisk(dir, 'vm-new', ID), true);
    assert.equal(readFileSync(disk(dir, 'vm-new'), 'utf8'), 'old data');
    assert.equal(statSync(disk(dir, 'vm-new')).ino, ino);
    assert.equal(hasKeptDataDisk(dir, ID), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nothing to keep without a data disk; a new VM without one drops the kept disk; ids are checked', () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-carry-'));
  try {
    assert.equal(keepDataDisk(dir, 'vm-none', ID), false);
    vmWithDisk(dir, 'vm-old', 'old data');
    keepDataDisk(dir, 'vm-old', ID);
    mkdirSync(join(dir, 'vms', 'vm-nodisk', 'qemu'), { recursive: true });
    assert.equal(restoreDataDisk(dir, 'vm-nodisk', ID), false);
    assert.equal(hasKeptDataDisk(dir, ID), false);
    assert.equal(hasKeptDataDisk(undefined, ID), false);
    assert.throws(() => carryPath(dir, '../../etc'), /not an instance id/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
