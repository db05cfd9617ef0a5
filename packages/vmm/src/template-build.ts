// Building a boot template (boot-snapshot.ts): boot a template VM with the instance-neutral cmdline to
// the guest's wait point, save its state, hash it and move it into place; and removing template VMs a
// killed VMM left behind. BootTemplates keeps the queue, the capacity wait and what a build holds.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError, type Resources } from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import type { DriverVm, DriverVmSpec, SnapshotInfo } from './driver.ts';
import { classifyTemplateBoot, consoleTail, TEMPLATE_MAC } from './instance-identity.ts';
import { qemuFingerprint, type TemplateDriver, type TemplateMeta, type TemplateWant } from './template-fit.ts';

const STATE_FILES = ['memory.mig', 'disk.qcow2', 'data.qcow2'];
/** In a template VM's runtime dir: its DriverVm, for reapOrphans. */
const ORPHAN_FILE = 'template-vm.json';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What a build uses of BootTemplates: its options, and the state close, yieldRoom and the GC look at. */
export interface TemplateBuildHost {
  driver: TemplateDriver;
  root: string;
  vmDir: string;
  bootTimeoutMs: number | undefined;
  log: Logger;
  closed(): boolean;
  /** `<root>/<formpack id>` (VM_BAD_ARGUMENT for a bad id). */
  fpDir(formpackId: string): string;
  /** The template VM being booted (undefined once it is gone). */
  setBuilding(vm: DriverVm | undefined): void;
  /** What it holds, from before its process starts until it is gone (the manager's capacity()). */
  reserve(r: Resources | undefined): void;
  /** Directories the GC must leave alone meanwhile. */
  pin(dir: string): void;
  unpin(dir: string): void;
}

/** Build the template for `want`: its meta, or undefined when closed meanwhile or the guest has no wait point. */
export async function buildTemplate(h: TemplateBuildHost, want: TemplateWant): Promise<TemplateMeta | undefined> {
  const qemu = await h.driver.templateIdentity();
  const fpDir = h.fpDir(want.formpackId);
  const final = join(fpDir, qemuFingerprint(qemu));
  const id = `tpl-${createHash('sha256').update(final).digest('hex').slice(0, 12)}`;
  const runDir = join(h.vmDir, id);
  const stateDir = `${final}.build`;
  await mkdir(fpDir, { recursive: true, mode: 0o700 });
  await chmod(h.root, 0o700).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
  await rm(runDir, { recursive: true, force: true });
  const spec: DriverVmSpec = {
    id,
    name: 'template',
    vcpu: want.vcpu,
    memMiB: want.memMiB,
    dir: join(runDir, 'qemu'),
    kernel: want.kernel,
    initramfs: want.initramfs,
    cmdline: want.cmdline,
    baseDisk: want.baseDisk,
    baseDiskFormat: want.baseDiskFormat,
    diskGiB: want.diskGiB,
    dataDiskMiB: want.dataDiskMiB,
    // Reaches nothing: the template has no address before it is saved, and its TAP (made by QEMU,
    // gone with it) is on no bridge.
    network:
      want.netMode === 'tap'
        ? { mode: 'tap', tap: `ftpl${id.slice(4, 14)}`, mac: TEMPLATE_MAC, netns: want.netns }
        : { mode: 'user', forwards: [], mac: TEMPLATE_MAC, restrict: true },
    agentChannel: want.agentChannel,
  };
  const t0 = Date.now();
  // Counted as used from before its process starts until it is gone (the manager's capacity()).
  h.reserve({ vcpu: want.vcpu, memMiB: want.memMiB, diskGiB: 0 });
  h.pin(final);
  h.pin(stateDir);
  let vm: DriverVm | undefined;
  let info: SnapshotInfo;
  let bootMs: number;
  try {
    vm = await h.driver.create(spec);
    h.setBuilding(vm);
    // So a VMM killed mid-build (SIGKILL, a crash) can remove this VM's process at its next start.
    await writeFile(join(runDir, ORPHAN_FILE), JSON.stringify(vm), { mode: 0o600 });
    await h.driver.start(vm);
    const timeout = h.bootTimeoutMs ?? 120_000;
    let seen: ReturnType<typeof classifyTemplateBoot> = 'pending';
    while (seen === 'pending') {
      if (h.closed()) return undefined;
      if (Date.now() - t0 > timeout) {
        throw new FormError(
          'TIMEOUT',
          `Cannot make a boot template: the guest did not reach its wait point in ${timeout} ms`,
        );
      }
      if ((await h.driver.status(vm)) === 'stopped') {
        throw new FormError('VM_HYPERVISOR', 'Cannot make a boot template: the template VM stopped while booting');
      }
      await sleep(100);
      seen = classifyTemplateBoot(consoleTail(vm.paths.serial));
    }
    if (seen === 'no-wait-point') {
      const reason = 'its guest init has no boot-snapshot wait point (vm_wait=identity): an older guest';
      await writeFile(join(fpDir, 'capability.json'), JSON.stringify({ capable: false, reason }), { mode: 0o600 });
      h.log.info({ formpack: want.formpackId, reason }, 'Formpack is not snapshot-capable; its VMs cold-boot');
      return undefined;
    }
    // The agent was started before the mark; make sure it answers (its state is saved with the VM).
    const agent = h.driver.agent(vm);
    for (let i = 0; ; i++) {
      try {
        await agent.ping(1000);
        break;
      } catch (err) {
        if (i > 60 || h.closed()) throw err;
        await sleep(100);
      }
    }
    bootMs = Date.now() - t0;
    info = await h.driver.snapshot(vm, stateDir);
  } finally {
    h.setBuilding(undefined);
    if (vm) await h.driver.destroy(vm).catch(() => undefined);
    h.reserve(undefined);
    h.unpin(final);
    h.unpin(stateDir);
    await rm(runDir, { recursive: true, force: true });
  }
  const files: TemplateMeta['files'] = {};
  for (const name of STATE_FILES) {
    const p = join(stateDir, name);
    if (!existsSync(p)) continue;
    await chmod(p, 0o600);
    files[name] = { sha256: await sha256File(p), bytes: (await stat(p)).size };
  }
  await rm(join(stateDir, 'snapshot.json'), { force: true });
  const meta: TemplateMeta = {
    v: 1,
    want,
    qemu,
    files,
    createdAt: new Date().toISOString(),
    bootMs,
    saveMs: info.totalMs,
  };
  await writeFile(join(stateDir, 'template.json'), JSON.stringify(meta, null, 1), { mode: 0o600 });
  await chmod(stateDir, 0o700);
  await rm(final, { recursive: true, force: true });
  await rename(stateDir, final);
  await writeFile(join(fpDir, 'capability.json'), JSON.stringify({ capable: true }), { mode: 0o600 });
  h.log.info(
    { formpack: want.formpackId, dir: final, bootMs, saveMs: info.totalMs, memoryBytes: info.memoryBytes },
    'boot template saved',
  );
  return meta;
}

/**
 * Remove template VMs a previous VMM left running (it was killed mid-build): their process, by the
 * pid its QEMU wrote, and their runtime dir (`skipId`: the one being built now). Returns how many.
 */
export async function reapTemplateOrphans(
  driver: TemplateDriver,
  vmDir: string,
  log: Logger,
  skipId: string | undefined,
): Promise<number> {
  let n = 0;
  for (const name of await readdir(vmDir).catch(() => [] as string[])) {
    if (!/^tpl-[0-9a-f]{12}$/.test(name) || skipId === name) continue;
    const runDir = join(vmDir, name);
    try {
      const vm = JSON.parse(readFileSync(join(runDir, ORPHAN_FILE), 'utf8')) as DriverVm;
      const pid = Number.parseInt(readFileSync(vm.paths.pidfile, 'utf8'), 10);
      if (pid > 0) vm.pid = pid;
      await driver.destroy(vm);
    } catch (err) {
      log.warn({ dir: runDir, err: (err as Error).message }, 'template VM of a previous run: no process to stop');
    }
    await rm(runDir, { recursive: true, force: true });
    log.info({ dir: runDir }, 'template VM of a previous run removed');
    n++;
  }
  return n;
}
