// The memory driver with the template operations of boot-snapshot.ts (TemplateDriver), for tests of
// template GC and capacity that need no QEMU. A template VM (`tpl-…`) boots to no mark at all; the test
// lets it reach the wait point with `reachWaitPoint()`, so a build can be watched while it runs. A VM
// booted with the wait word is ready only once its identity is released (as the guest init does);
// `holdRelease` makes releases hang (a VMM killed before it released a VM).
import { appendFileSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'node:test';
import { GUEST_READY_MARKER } from '@formation/interface';
import { createLogger } from '@formation/service';
import { WAIT_MARK, WAIT_WORD } from '../src/boot-snapshot.ts';
import { loadVmmConfig } from '../src/config.ts';
import type { DriverVm, SnapshotInfo } from '../src/driver.ts';
import { VmManager, type VmManagerOptions } from '../src/manager.ts';
import { MemoryDriver } from '../src/memory-driver.ts';
import { VmNetwork } from '../src/network.ts';
import type { QemuIdentity } from '../src/qemu-identity.ts';
import { VmStore } from '../src/store.ts';
import { TEST_QEMU } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

export class TemplateMemoryDriver extends MemoryDriver {
  /** Template VMs started so far (the latest last). */
  readonly templateVms: DriverVm[] = [];
  private readonly qemu: QemuIdentity;
  holdRelease = false;

  constructor(qemu: QemuIdentity) {
    super();
    this.qemu = qemu;
  }

  async templateIdentity(): Promise<QemuIdentity> {
    return this.qemu;
  }

  async writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>): Promise<void> {
    if (this.holdRelease) return new Promise<void>(() => undefined);
    for (const f of files) {
      await this.agent(vm).exec('/bin/sh', ['-c', `echo ${JSON.stringify(f.data.trim())} > ${f.path}`]);
      if (f.path === '/run/form/release') appendFileSync(vm.paths.serial, `${GUEST_READY_MARKER}\n`);
    }
  }

  override async start(vm: DriverVm, opts: { resume?: boolean } = {}): Promise<void> {
    await super.start(vm, opts);
    if (vm.spec.cmdline.includes(WAIT_WORD) && !opts.resume) {
      writeFileSync(vm.paths.serial, `[memory] ${vm.spec.id} booting\n`);
      if (vm.spec.id.startsWith('tpl-')) this.templateVms.push(vm);
    }
  }

  /** A template's state under the names the template lookup expects of a QEMU template, too. */
  override async snapshot(vm: DriverVm, dir: string): Promise<SnapshotInfo> {
    const info = await super.snapshot(vm, dir);
    copyFileSync(join(dir, 'memory.json'), join(dir, 'memory.mig'));
    copyFileSync(join(dir, 'disk.json'), join(dir, 'disk.qcow2'));
    return info;
  }

  /** The latest template VM prints the wait mark (its build goes on to save it). */
  reachWaitPoint(): void {
    const vm = this.templateVms.at(-1);
    if (vm) appendFileSync(vm.paths.serial, `${WAIT_MARK}\n`);
  }
}

/**
 * A VM manager over a TemplateMemoryDriver in `dir` with boot templates on and no waits (quiet 0, build
 * at once, looks every 30 ms), capacity 8 vCPU / `memMiB`; `reuse`: a second manager on the same dir
 * (the test Formpack is already there). Not initialised: the caller runs `init()`.
 */
export function templateVmm(
  dir: string,
  memMiB: number,
  o: { reuse?: boolean; extra?: Partial<VmManagerOptions> } = {},
): { vmm: VmManager; driver: TemplateMemoryDriver; formpack: string; store: VmStore } {
  const logger = createLogger('silent');
  const config = loadVmmConfig(
    {},
    { vmDir: `${dir}/vms`, imagesDir: `${dir}/cache`, formpacksDir: `${dir}/formpacks`, cacheDir: `${dir}/cache` },
  );
  const formpack = o.reuse ? 'c'.repeat(64) : memoryFormpack(config.formpacksDir); // 1 vCPU, 256 MiB
  const driver = new TemplateMemoryDriver(TEST_QEMU);
  const store = new VmStore(config.vmDir);
  const vmm = new VmManager({
    driver,
    store,
    network: new VmNetwork(config.network, logger),
    logger,
    formpacksDir: config.formpacksDir,
    imagesDir: config.imagesDir,
    cacheDir: config.cacheDir,
    capacity: { vcpu: 8, memMiB, diskGiB: 100 },
    healthIntervalMs: 0,
    stopTimeoutMs: 2000,
    bootSnapshots: true,
    templateQuietMs: 0,
    templateTiming: { buildDelayMs: 0, retryMs: 30, gcEveryMs: 0 },
    ...o.extra,
  });
  return { vmm, driver, formpack, store };
}

/**
 * For the tests of a describe block: `start(memMiB)` makes and initialises a templateVmm (with `extra`)
 * in a fresh directory; `again(memMiB)` a second one on the same directories while the first is never
 * closed (as after a SIGKILL; the test closes the second). After each test the first one's VMs are
 * destroyed, it is closed and the directory removed.
 */
export function templateVmmPerTest(prefix: string, extra?: Partial<VmManagerOptions>) {
  let dir: string | undefined;
  let first: VmManager | undefined;
  afterEach(async () => {
    await first?.destroyAll();
    await first?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    first = undefined;
    dir = undefined;
  });
  const made = async (memMiB: number, reuse: boolean) => {
    const m = templateVmm(dir as string, memMiB, { reuse, extra });
    if (!reuse) first = m.vmm;
    await m.vmm.init();
    return m;
  };
  return {
    start: (memMiB: number) => {
      dir = mkdtempSync(join(tmpdir(), prefix));
      return made(memMiB, false);
    },
    again: (memMiB: number) => made(memMiB, true),
    /** The directory of this test's VMMs. */
    dir: () => dir as string,
  };
}
