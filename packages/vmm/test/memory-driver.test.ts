import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { runDriverCompliance } from '../src/compliance.ts';
import type { DriverVmSpec } from '../src/driver.ts';
import { MemoryDriver } from '../src/memory-driver.ts';
import { guestExec } from '../src/memory-guest.ts';
import { type TestBoot, testVmSpec } from './helpers.ts';

// The in-memory driver passes the same compliance suite as QEMU: no root, no KVM, no QEMU.
const tmp = mkdtempSync('/tmp/fvmm-mem-');
after(() => rmSync(tmp, { recursive: true, force: true }));
const base = `${tmp}/base.img`;
writeFileSync(base, 'base disk');
let n = 0;

const boot: TestBoot = {
  kernel: base,
  cmdline: '',
  baseDisk: base,
  baseDiskFormat: 'raw',
  agentChannel: 'org.qemu.guest_agent.0',
};
const spec = (): DriverVmSpec => testVmSpec(`mem-${process.pid}-${++n}`, tmp, boot, [], { dataDiskMiB: 64 });

runDriverCompliance({ name: 'memory', makeDriver: () => new MemoryDriver(), makeSpec: spec, bootTimeoutMs: 5000 });

test('memory driver: a missing base disk is refused like QEMU does', async () => {
  const d = new MemoryDriver();
  await assert.rejects(
    d.create({ ...spec(), baseDisk: `${tmp}/missing.img` }),
    (e: unknown) => isFormError(e) && e.code === 'VM_IMAGE_INVALID' && /does not exist/.test(e.message),
  );
  await d.close();
});

test('memory driver: a stale pid of another process is never adopted', async () => {
  const d = new MemoryDriver();
  const vm = await d.create(spec());
  writeFileSync(vm.paths.pidfile, `${process.pid}\n`); // alive, but not this VM's process
  assert.equal(await d.recover(vm), 'gone');
  await d.destroy(vm);
  await d.close();
});

test('memory guest shell: what it runs, and what it does not pretend to', () => {
  const fs: Record<string, string> = {};
  assert.deepEqual(guestExec(fs, '/bin/sh', ['-c', 'echo a > /f; echo b >> /f; cat /f']), {
    exitcode: 0,
    stdout: 'a\nb\n',
    stderr: '',
  });
  assert.equal(guestExec(fs, '/bin/sh', ['-c', 'tail -n 1 /f']).stdout, 'b\n');
  assert.equal(guestExec(fs, '/bin/sh', ['-c', 'false && echo x || echo y']).stdout, 'y\n');
  assert.equal(guestExec(fs, '/bin/sh', ['-c', 'cat /nope']).exitcode, 1);
  const r = guestExec(fs, '/bin/sh', ['-c', 'curl http://x']);
  assert.equal(r.exitcode, 127);
  assert.match(r.stderr, /curl: not found/);
});
