import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { processAlive } from '@formation/service/process';
import type { DriverVm, DriverVmSpec, ExitInfo, HypervisorDriver } from './driver.ts';

/** What the compliance suite needs from the test that runs it. */
export interface ComplianceHarness {
  /** Name shown in the test output. */
  name: string;
  /** A fresh driver instance (called again to simulate a VMM restart). */
  makeDriver: () => HypervisorDriver;
  /** A spec for a small bootable VM whose guest runs the agent (unique id + dir per call). */
  makeSpec: () => DriverVmSpec;
  /** Skip the whole suite with this reason (prerequisites missing). */
  skip?: string | undefined;
  /** Longest wait for a boot (ms). */
  bootTimeoutMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll the guest agent until it answers. */
async function waitAgent(d: HypervisorDriver, vm: DriverVm, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      await d.agent(vm).ping(1500);
      return;
    } catch (err) {
      last = err;
      await sleep(250);
    }
  }
  throw new Error(`guest agent did not answer within ${timeoutMs} ms: ${(last as Error)?.message}`);
}

/**
 * The compliance suite every `HypervisorDriver` must pass (js-libp2p style): fingerprint, lifecycle,
 * pause/resume, snapshot/restore (guest state really rolled back), suspend to disk and wake (a /tmp
 * file survives; a truncated or damaged image is refused), graceful and forced stop, replaceDisk (a
 * new VM boots the disk another one wrote; refused while it runs; a foreign file changes nothing), exit
 * detection of a process killed from outside, recovery by a new driver instance (no duplicate), and
 * destroy leaving nothing behind. Uses few boots (4).
 *
 * @example
 * runDriverCompliance({ name: 'qemu', makeDriver: () => new QemuDriver({ logger }), makeSpec });
 */
export function runDriverCompliance(h: ComplianceHarness): void {
  const bootMs = h.bootTimeoutMs ?? 90_000;
  describe(`HypervisorDriver compliance: ${h.name}`, { skip: h.skip }, () => {
    let d: HypervisorDriver;
    let vm: DriverVm;
    const exits: ExitInfo[] = [];
    const made: Array<{ d: HypervisorDriver; vm: DriverVm }> = [];

    before(async () => {
      d = h.makeDriver();
      d.onExit((i) => exits.push(i));
    });
    after(async () => {
      for (const m of made) await m.d.destroy(m.vm).catch(() => undefined);
      await d?.close();
    });

    test('fingerprint says what the host can do', async () => {
      const fp = await d.fingerprint();
      assert.equal(fp.driver, d.name);
      assert.equal(fp.available, true, fp.reason);
      assert.ok(fp.accel === 'kvm' || fp.accel === 'tcg', `accel ${fp.accel}`);
      assert.ok(fp.accelReason && fp.accelReason.length > 0, 'the accelerator choice carries a reason');
    });

    test('create prepares a VM without starting it', async () => {
      vm = await d.create(h.makeSpec());
      made.push({ d, vm });
      assert.equal(await d.status(vm), 'stopped');
      assert.equal(vm.pid, undefined);
    });

    test('start boots the guest; its agent answers', async () => {
      await d.start(vm);
      assert.ok(vm.pid && processAlive(vm.pid), 'a hypervisor process runs');
      assert.equal(await d.status(vm), 'running');
      await waitAgent(d, vm, bootMs);
      const r = await d.agent(vm).exec('/bin/sh', ['-c', 'echo compliance-$((6*7))']);
      assert.equal(r.exitcode, 0);
      assert.equal(r.stdout.trim(), 'compliance-42');
    });

    test('start on a running VM is refused, never a second process', async () => {
      const pid = vm.pid;
      await assert.rejects(d.start(vm), (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE');
      assert.equal(vm.pid, pid);
    });

    test('pause and resume', async () => {
      await d.pause(vm);
      assert.equal(await d.status(vm), 'paused');
      await d.resume(vm);
      assert.equal(await d.status(vm), 'running');
      await d.agent(vm).ping(3000);
    });

    test('snapshot then restore rolls memory and disk back', async () => {
      const ga = d.agent(vm);
      await ga.exec('/bin/sh', ['-c', 'echo before > /root/marker; sync']);
      const dir = `${vm.spec.dir}-snap`;
      const info = await d.snapshot(vm, dir);
      assert.ok(info.memoryBytes > 0 && info.diskBytes > 0);
      assert.equal(await d.status(vm), 'running', 'a running VM keeps running after a snapshot');
      await ga.exec('/bin/sh', ['-c', 'echo after > /root/marker; echo x > /root/later; sync']);
      await d.restore(vm, dir);
      assert.equal(await d.status(vm), 'running');
      await waitAgent(d, vm, 20_000);
      const r = await ga.exec('/bin/sh', [
        '-c',
        'cat /root/marker; test -e /root/later && echo later-exists || echo no-later',
      ]);
      assert.equal(r.stdout, 'before\nno-later\n');
      await assert.rejects(d.restore(vm, `${dir}-missing`), (e: unknown) => isFormError(e));
      rmSync(dir, { recursive: true, force: true });
    });

    test('suspend to disk and wake: the process ends, memory comes back; a damaged image is refused', async () => {
      const ga = d.agent(vm);
      await ga.exec('/bin/sh', ['-c', 'echo in-memory > /tmp/suspend-marker']);
      const pid = vm.pid;
      const file = `${vm.spec.dir}-suspend/memory.img`;
      const info = await d.suspend(vm, file);
      assert.equal(processAlive(pid), false, 'no hypervisor process while suspended');
      assert.equal(await d.status(vm), 'stopped');
      assert.ok(info.bytes > 0 && /^[0-9a-f]{64}$/.test(info.sha256));
      assert.equal(statSync(file).mode & 0o777, 0o600, 'the memory image is private');
      assert.equal(statSync(file).size, info.bytes);
      // Truncated, then same size but damaged: refused before the VM runs; the image stays as it was.
      const good = readFileSync(file);
      writeFileSync(file, good.subarray(0, Math.floor(good.length / 2)));
      await assert.rejects(d.wake(vm, file, info), (e: unknown) => isFormError(e) && e.code === 'VM_IMAGE_INVALID');
      assert.equal(await d.status(vm), 'stopped');
      const bad = Buffer.from(good);
      bad[Math.floor(bad.length / 2)] = (bad[Math.floor(bad.length / 2)] ?? 0) ^ 0xff;
      writeFileSync(file, bad);
      await assert.rejects(d.wake(vm, file, info), (e: unknown) => isFormError(e) && e.code === 'VM_IMAGE_INVALID');
      assert.equal(await d.status(vm), 'stopped');
      assert.equal(vm.pid === undefined || !processAlive(vm.pid), true, 'no process left by a refused wake');
      writeFileSync(file, good);
      await d.wake(vm, file, info);
      assert.equal(await d.status(vm), 'running');
      await waitAgent(d, vm, 20_000);
      const r = await ga.exec('/bin/sh', ['-c', 'cat /tmp/suspend-marker']);
      assert.equal(r.stdout, 'in-memory\n', 'a file in the guest /tmp survived: memory restored, not a reboot');
      assert.equal(exits.length, 0, 'suspend and wake are not unexpected exits');
      rmSync(`${vm.spec.dir}-suspend`, { recursive: true, force: true });
    });

    test('graceful stop powers the guest off cleanly', async () => {
      const pid = vm.pid;
      const r = await d.stop(vm, { timeoutMs: 20_000 });
      assert.equal(r.forced, false);
      assert.equal(processAlive(pid), false);
      assert.equal(await d.status(vm), 'stopped');
      assert.equal(exits.length, 0, 'a stop we asked for is not reported as an unexpected exit');
    });

    test('replaceDisk: a new VM boots the disk another one wrote; refused while it runs; a foreign file changes nothing', async () => {
      // The VM is stopped (above); its disk holds /root/marker = before (the snapshot test).
      const saved = `${vm.spec.dir}-saved-disk`;
      const foreign = `${vm.spec.dir}-foreign-disk`;
      copyFileSync(vm.paths.disk, saved);
      writeFileSync(foreign, 'not a disk of any driver\n');
      const own = readFileSync(vm.paths.disk);
      await assert.rejects(d.replaceDisk(vm, foreign), (e: unknown) => isFormError(e));
      assert.deepEqual(readFileSync(vm.paths.disk), own, 'a refused image leaves the disk as it was');
      const other = await d.create(h.makeSpec());
      made.push({ d, vm: other });
      try {
        await d.replaceDisk(other, saved);
        await d.start(other);
        await waitAgent(d, other, bootMs);
        const r = await d.agent(other).exec('/bin/sh', ['-c', 'cat /root/marker']);
        assert.equal(r.stdout, 'before\n', 'the new VM runs on the disk the other one wrote');
        await assert.rejects(d.replaceDisk(other, saved), (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE');
      } finally {
        await d.destroy(other);
        rmSync(saved, { force: true });
        rmSync(foreign, { force: true });
      }
      assert.equal(exits.length, 0, 'a destroy we asked for is not an unexpected exit');
    });

    test('a hung guest is stopped by force after the timeout', async () => {
      await d.start(vm);
      await waitAgent(d, vm, bootMs);
      await d.pause(vm); // the guest can no longer react: a hang
      const pid = vm.pid;
      const r = await d.stop(vm, { timeoutMs: 1500 });
      assert.equal(r.forced, true);
      assert.equal(processAlive(pid), false);
    });

    test('recover: a new driver instance re-attaches (no duplicate), then sees a kill from outside', async () => {
      await d.start(vm);
      const pid = vm.pid as number;
      await d.close(); // the VMM goes away, the VM keeps running
      assert.equal(processAlive(pid), true);
      const d2 = h.makeDriver();
      made.push({ d: d2, vm });
      const seen: ExitInfo[] = [];
      d2.onExit((i) => seen.push(i));
      const copy = JSON.parse(JSON.stringify(vm)) as DriverVm;
      assert.equal(await d2.recover(copy), 'running');
      assert.equal(copy.pid, pid, 'the same process, not a new one');
      assert.equal(await d2.recover(copy), 'running', 'recover twice is harmless');
      process.kill(pid, 'SIGKILL');
      const end = Date.now() + 10_000;
      while (seen.length === 0 && Date.now() < end) await sleep(50);
      assert.equal(seen.length, 1, 'the kill is reported once');
      assert.equal(seen[0]?.id, copy.spec.id);
      assert.match(seen[0]?.reason ?? '', /./);
      assert.equal(await d2.status(copy), 'stopped');
      assert.equal(await d2.recover(copy), 'gone');
      await d2.destroy(copy);
      assert.equal(existsSync(copy.spec.dir), false, 'destroy removes the VM directory');
      await d2.close();
      d = h.makeDriver();
    });
  });
}
