import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { AccelProbe } from './accel.ts';
import { applyLimits, removeLimits } from './cgroup.ts';
import type {
  DriverFingerprint,
  DriverVm,
  DriverVmSpec,
  ExitInfo,
  GuestAgent,
  HypervisorDriver,
  SnapshotInfo,
  StopResult,
  SuspendInfo,
} from './driver.ts';
import { assertGpusPassable } from './gpu.ts';
import { checkImage } from './image-check.ts';
import { qemuGuestAgent, writeFilesOverAgent } from './qemu-agent.ts';
import { qemuArgv } from './qemu-argv.ts';
import { createVmDisks, replaceOverlay } from './qemu-disks.ts';
import { probeQemu } from './qemu-fingerprint.ts';
import { type QemuIdentity, qemuIdentity } from './qemu-identity.ts';
import { type QemuMemoryHost, restoreVm, snapshotVm, suspendVm, wakeVm } from './qemu-memory.ts';
import { MIGRATE_ROOT } from './qemu-migration.ts';
import {
  exitInfoOf,
  isOurQemu,
  processAlive,
  qemuUidFor,
  readPidfile,
  sleep,
  startFailure,
  waitGone,
} from './qemu-process.ts';
import { QmpClient } from './qmp.ts';
import { KeyedSerializer } from './state-machine.ts';

// The driver's parts, each in its own module (the public names stay exported from here).
export {
  hasControlOrComma,
  QEMU_SANDBOX,
  QEMU_SANDBOX_RUNAS,
  type QemuArgvOptions,
  qemuArgv,
  validateSpec,
} from './qemu-argv.ts';
export type { QemuIdentity } from './qemu-identity.ts';
export { MIGRATE_ROOT } from './qemu-migration.ts';
export { isOurQemu, processAlive, QEMU_UID_BASE, qemuImgInfo, qemuUidFor } from './qemu-process.ts';

export interface QemuDriverOptions {
  logger: Logger;
  /** `auto` probes KVM (cached), else forces one. */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Kernel used by the KVM probe. */
  probeKernel?: string | undefined;
  /** Where the probe result is cached (per host). */
  probeCacheFile?: string | undefined;
  machine?: 'pc' | 'q35' | 'microvm';
  /** QEMU's seccomp sandbox (`-sandbox on,…`). */
  sandbox?: boolean;
  /**
   * Who QEMU runs as once the VM is set up (`-runas uid:gid`): `per-vm` (default when the VMM is root)
   * gives each VM its own unprivileged uid/gid (`qemuUidFor`), so a guest that escapes into QEMU is
   * neither root nor able to ptrace another VM's QEMU; `false` keeps QEMU as the VMM's user.
   */
  runAs?: 'per-vm' | { uid: number; gid: number } | false;
  /** Put each QEMU in its own cgroup with memory/CPU limits. */
  cgroupLimits?: boolean;
  qemuBinary?: string;
}

interface Live {
  pid: number;
  qmp: QmpClient | undefined;
  child: ChildProcess | undefined;
  /** Set while we stop/restore/destroy it ourselves: its exit is not reported. */
  expectingExit: boolean;
  shutdown: { guest: boolean; reason: string } | undefined;
  childExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  finalized: boolean;
  gone: Promise<void>;
  markGone: () => void;
}

/**
 * The QEMU driver: one `qemu-system-x86_64` per VM, controlled over QMP, guest agent over a
 * virtio-serial channel, direct kernel boot, a qcow2 overlay over the (untouched) base image, virtio
 * disk and network, serial console to a file, seccomp sandbox and cgroup limits. KVM when the probe
 * shows it works, else TCG.
 */
export class QemuDriver implements HypervisorDriver {
  readonly name = 'qemu';
  private readonly log: Logger;
  private readonly opts: QemuDriverOptions;
  private readonly live = new Map<string, Live>();
  private readonly exitListeners: Array<(i: ExitInfo) => void> = [];
  private readonly agentLock = new KeyedSerializer();
  private fp: Promise<DriverFingerprint> | undefined;
  private accel: AccelProbe | undefined;
  private qemuId: Promise<QemuIdentity> | undefined;

  /** What qemu-memory.ts uses of this driver. */
  private readonly memoryHost: QemuMemoryHost;

  constructor(opts: QemuDriverOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'qemu-driver' });
    this.memoryHost = {
      log: this.log,
      isLive: (id) => this.live.has(id),
      qmp: (vm) => this.qmp(vm),
      launchIncoming: (vm, memoryFd) => this.launch(vm, true, memoryFd),
      stop: (vm, o) => this.stop(vm, o),
      runAsFor: (id) => this.runAsFor(id),
      agentCall: (vm, timeoutMs, fn) => this.agentCall(vm, timeoutMs, fn),
    };
  }

  private get qemu(): string {
    return this.opts.qemuBinary ?? 'qemu-system-x86_64';
  }

  fingerprint(): Promise<DriverFingerprint> {
    this.fp ??= this.doFingerprint();
    return this.fp;
  }

  private async doFingerprint(): Promise<DriverFingerprint> {
    const r = await probeQemu({ ...this.opts, name: this.name, qemu: this.qemu, log: this.log });
    if (r.accel) this.accel = r.accel;
    return r.fingerprint;
  }

  onExit(listener: (info: ExitInfo) => void): void {
    this.exitListeners.push(listener);
  }

  async create(spec: DriverVmSpec): Promise<DriverVm> {
    return createVmDisks(spec);
  }

  private args(vm: DriverVm, incoming: boolean): string[] {
    const runAs = this.runAsFor(vm.spec.id);
    return qemuArgv(vm, {
      incoming,
      machine: this.opts.machine,
      accel: this.accel?.accel ?? 'tcg',
      sandbox: this.opts.sandbox,
      runAs,
      diskFds: runAs !== undefined,
    });
  }

  /** The uid/gid QEMU of VM `id` drops to, or undefined when it stays as the VMM's user. */
  runAsFor(id: string): { uid: number; gid: number } | undefined {
    const r = this.opts.runAs ?? (process.getuid?.() === 0 ? 'per-vm' : false);
    if (r === false) return undefined;
    if (r === 'per-vm') {
      const uid = qemuUidFor(id);
      return { uid, gid: uid };
    }
    return r;
  }

  async start(vm: DriverVm): Promise<void> {
    await this.launch(vm, false);
  }

  /** Start QEMU; with `extraFd` (an open file) inherited, resolves to the fd number QEMU has it under. */
  private async launch(vm: DriverVm, incoming: boolean, extraFd?: number): Promise<number> {
    const t0 = Date.now();
    await this.fingerprint();
    const id = vm.spec.id;
    if (this.live.has(id)) throw new FormError('VM_BAD_STATE', `Cannot start VM ${id}: its QEMU process is running`);
    // Everything QEMU will open, checked before it runs: argv built from validated values only, the
    // overlay backed by exactly this VM's base (a revision or snapshot copied over it came from outside).
    const qemuArgs = this.args(vm, incoming);
    assertGpusPassable(vm.spec.gpus ?? [], id);
    // Both disks at once (four qemu-img runs on the boot path).
    const data = vm.paths.data;
    await Promise.all([
      checkImage(resolve(vm.paths.disk), {
        format: 'qcow2',
        backing: { file: resolve(vm.spec.baseDisk), format: vm.spec.baseDiskFormat },
      }),
      data && existsSync(data) ? checkImage(resolve(data), { format: 'qcow2' }) : undefined,
    ]);
    const checkedMs = Date.now() - t0;
    for (const f of [vm.paths.qmp, vm.paths.qga, vm.paths.pidfile]) await rm(f, { force: true });
    const logPath = join(vm.spec.dir, 'qemu.log');
    const logFd = openSync(logPath, 'w');
    // A QEMU that drops privileges reopens its writable disks at migration (read-only when inactivated,
    // read-write when activated), which by path needs rights it no longer has. Hand it both opens of
    // each as fds 3.. (qemuArgv's `-add-fd` sets) instead: no path is reopened, nothing is chowned.
    const diskFds: number[] = [];
    if (this.runAsFor(id)) {
      for (const f of [vm.paths.disk, ...(vm.paths.data ? [vm.paths.data] : [])]) {
        diskFds.push(openSync(f, 'r+'), openSync(f, 'r'));
      }
    }
    const net = vm.spec.network;
    const [cmd, args] =
      net.mode === 'tap' && net.netns
        ? ['ip', ['netns', 'exec', net.netns, this.qemu, ...qemuArgs]]
        : [this.qemu, qemuArgs];
    const extra = extraFd === undefined ? [] : [extraFd];
    const child = spawn(cmd, args as string[], {
      detached: true,
      stdio: ['ignore', logFd, logFd, ...diskFds, ...extra],
    });
    closeSync(logFd);
    for (const fd of diskFds) closeSync(fd);
    child.unref();
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnErr: Error | undefined;
    child.on('error', (e) => {
      spawnErr = e;
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal };
    });
    // Wait for QMP to answer (or the process to die).
    const deadline = Date.now() + 15_000;
    let qmp: QmpClient | undefined;
    while (Date.now() < deadline) {
      if (exited || spawnErr) break;
      if (existsSync(vm.paths.qmp)) {
        try {
          qmp = await QmpClient.connect(vm.paths.qmp, { connectTimeoutMs: 3000 });
          break;
        } catch {
          // not ready yet
        }
      }
      await sleep(20);
    }
    if (!qmp) {
      if (!exited && child.pid) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await sleep(50);
      throw startFailure(id, cmd, logPath, spawnErr, exited);
    }
    // No pidfile yet: the child pid is QEMU itself (ip netns exec execs it).
    const pid = readPidfile(vm.paths.pidfile) ?? child.pid ?? 0;
    vm.pid = pid;
    const live = this.track(vm, pid, qmp, child);
    if (exited) live.childExit = exited;
    child.on('exit', (code, signal) => {
      live.childExit = { code, signal };
      void this.finalize(vm, live);
    });
    if (this.opts.cgroupLimits !== false && process.getuid?.() === 0) {
      const r = applyLimits(`formation-vmm/${id}`, pid, vm.spec.vcpu, vm.spec.memMiB);
      this.log.debug({ id, limits: r }, 'per-VM limits');
    }
    this.log.info({ id, pid, incoming, checkedMs, totalMs: Date.now() - t0 }, 'qemu started');
    return 3 + diskFds.length;
  }

  /** Start watching one live QEMU: QMP events + EOF, process exit. */
  private track(vm: DriverVm, pid: number, qmp: QmpClient, child: ChildProcess | undefined): Live {
    const { promise: gone, resolve: markGone } = Promise.withResolvers<void>();
    const live: Live = {
      pid,
      qmp,
      child,
      expectingExit: false,
      shutdown: undefined,
      childExit: undefined,
      finalized: false,
      gone,
      markGone,
    };
    this.live.set(vm.spec.id, live);
    qmp.on('event', (e: { event: string; data?: Record<string, unknown> }) => {
      if (e.event === 'SHUTDOWN') {
        live.shutdown = { guest: e.data?.guest === true, reason: String(e.data?.reason ?? 'unknown') };
      }
    });
    qmp.on('close', () => {
      if (live.qmp === qmp) live.qmp = undefined;
      void (async () => {
        // EOF: QEMU exited (or closed the monitor). Confirm the process is gone before reporting.
        if (await waitGone(pid, 3000)) await this.finalize(vm, live);
      })();
    });
    return live;
  }

  private async finalize(vm: DriverVm, live: Live): Promise<void> {
    if (live.finalized) return;
    if (processAlive(live.pid)) {
      if (!(await waitGone(live.pid, 3000))) return;
    }
    if (live.finalized) return;
    live.finalized = true;
    live.qmp?.close();
    if (this.live.get(vm.spec.id) === live) this.live.delete(vm.spec.id);
    void removeLimits(`formation-vmm/${vm.spec.id}`);
    vm.pid = undefined;
    for (const f of [vm.paths.qmp, vm.paths.qga, vm.paths.pidfile]) await rm(f, { force: true }).catch(() => undefined);
    live.markGone();
    if (live.expectingExit) return;
    const info = exitInfoOf(vm, live);
    this.log.warn({ ...info }, 'qemu exited unexpectedly');
    for (const l of this.exitListeners) l(info);
  }

  private async qmp(vm: DriverVm): Promise<QmpClient> {
    const live = this.live.get(vm.spec.id);
    if (!live) throw new FormError('VM_BAD_STATE', `Cannot control VM ${vm.spec.id}: its QEMU process is not running`);
    if (live.qmp?.isOpen) return live.qmp;
    const q = await QmpClient.connect(vm.paths.qmp, { connectTimeoutMs: 3000 });
    live.qmp = q;
    return q;
  }

  async blockStats(vm: DriverVm): Promise<unknown> {
    return (await this.qmp(vm)).execute('query-blockstats');
  }

  async status(vm: DriverVm): Promise<'running' | 'paused' | 'stopped'> {
    if (!this.live.has(vm.spec.id)) return 'stopped';
    const r = await (await this.qmp(vm)).execute<{ status: string; running: boolean }>('query-status');
    return r.running ? 'running' : 'paused';
  }

  async stop(vm: DriverVm, opts: { timeoutMs?: number; force?: boolean } = {}): Promise<StopResult> {
    const t0 = Date.now();
    const live = this.live.get(vm.spec.id);
    if (!live) return { forced: false, ms: 0 };
    live.expectingExit = true;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    let forced = false;
    if (!opts.force) {
      // 1) clean poweroff inside the guest through the agent, 2) ACPI power button.
      const agentMs = Math.max(500, Math.min(3000, timeoutMs / 2));
      try {
        await this.agentCall(vm, agentMs, async (ga) => {
          await ga.execute('guest-exec', { path: '/sbin/form-poweroff', arg: [] }, agentMs);
        });
      } catch (err) {
        this.log.debug({ id: vm.spec.id, err: (err as Error).message }, 'agent poweroff failed');
      }
      try {
        await (await this.qmp(vm)).execute('system_powerdown', undefined, 1000);
      } catch {
        // ignore: the next step decides
      }
      await waitGone(live.pid, Math.max(0, timeoutMs - (Date.now() - t0)));
    }
    if (processAlive(live.pid)) {
      forced = true;
      try {
        await (await this.qmp(vm)).execute('quit', undefined, 1000);
      } catch {
        // fall through to SIGKILL
      }
      if (!(await waitGone(live.pid, 2000))) {
        try {
          process.kill(live.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        await waitGone(live.pid, 3000);
      }
    }
    await this.finalize(vm, live);
    await Promise.race([live.gone, sleep(2000)]);
    return { forced, ms: Date.now() - t0 };
  }

  async restart(vm: DriverVm, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.stop(vm, opts);
    await this.start(vm);
  }

  async pause(vm: DriverVm): Promise<void> {
    await (await this.qmp(vm)).execute('stop');
  }

  async resume(vm: DriverVm): Promise<void> {
    await (await this.qmp(vm)).execute('cont');
  }

  // ---------- memory state: snapshot, restore, suspend, wake (qemu-memory.ts) ----------

  async snapshot(vm: DriverVm, dir: string): Promise<SnapshotInfo> {
    return snapshotVm(this.memoryHost, vm, dir);
  }

  /**
   * `memorySha256` (boot templates): a memory file that does not match is never run (see restoreVm);
   * `paused`: the VM is left paused once loaded and checked (a standby VM).
   */
  async restore(
    vm: DriverVm,
    dir: string,
    opts: { memorySha256?: string | undefined; paused?: boolean | undefined } = {},
  ): Promise<void> {
    await restoreVm(this.memoryHost, vm, dir, opts);
  }

  async suspend(vm: DriverVm, file: string): Promise<SuspendInfo> {
    return suspendVm(this.memoryHost, vm, file);
  }

  async wake(vm: DriverVm, file: string, expect: { bytes: number; sha256: string }): Promise<void> {
    await wakeVm(this.memoryHost, vm, file, expect);
  }

  async replaceDisk(vm: DriverVm, image: string): Promise<void> {
    if (this.live.has(vm.spec.id) || (vm.pid && isOurQemu(vm.pid, vm.paths.qmp))) {
      throw new FormError('VM_BAD_STATE', `Cannot replace the disk of VM ${vm.spec.id}: its QEMU runs`, {
        hint: 'Stop the VM first.',
      });
    }
    await replaceOverlay(vm.paths.disk, image);
  }

  async destroy(vm: DriverVm): Promise<void> {
    if (this.live.has(vm.spec.id)) await this.stop(vm, { force: true });
    else if (vm.pid && isOurQemu(vm.pid, vm.paths.qmp)) {
      process.kill(vm.pid, 'SIGKILL');
      await waitGone(vm.pid, 3000);
    }
    await removeLimits(`formation-vmm/${vm.spec.id}`);
    await rm(join(MIGRATE_ROOT, vm.spec.id), { recursive: true, force: true });
    await rm(vm.spec.dir, { recursive: true, force: true });
  }

  async recover(vm: DriverVm): Promise<'running' | 'paused' | 'gone'> {
    if (this.live.has(vm.spec.id)) return (await this.status(vm)) === 'running' ? 'running' : 'paused';
    const pid = readPidfile(vm.paths.pidfile) ?? vm.pid;
    if (!pid || !processAlive(pid) || !isOurQemu(pid, vm.paths.qmp)) {
      vm.pid = undefined;
      return 'gone';
    }
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(vm.paths.qmp, { connectTimeoutMs: 5000 });
    } catch (err) {
      throw new FormError(
        'VM_HYPERVISOR',
        `Cannot re-attach VM ${vm.spec.id}: its QEMU (pid ${pid}) lives but QMP does not answer: ${(err as Error).message}`,
        { hint: `Stop that process (kill ${pid}) and start the VM again.` },
      );
    }
    vm.pid = pid;
    this.track(vm, pid, qmp, undefined);
    const st = await qmp.execute<{ running: boolean }>('query-status');
    this.log.info({ id: vm.spec.id, pid }, 'qemu re-attached');
    return st.running ? 'running' : 'paused';
  }

  /** Run `fn` with a fresh guest-agent connection (one client at a time per VM). */
  private agentCall<T>(vm: DriverVm, timeoutMs: number, fn: (ga: QmpClient) => Promise<T>): Promise<T> {
    return this.agentLock.run(vm.spec.id, async () => {
      if (!this.live.has(vm.spec.id)) {
        throw new FormError('VM_BAD_STATE', `Cannot reach the agent of VM ${vm.spec.id}: it is not running`);
      }
      const ga = await QmpClient.connect(vm.paths.qga, { mode: 'qga', connectTimeoutMs: timeoutMs, timeoutMs });
      try {
        return await fn(ga);
      } finally {
        ga.close();
      }
    });
  }

  agent(vm: DriverVm): GuestAgent {
    return qemuGuestAgent(vm, (timeoutMs, fn) => this.agentCall(vm, timeoutMs, fn));
  }

  // ---------- boot templates (boot-snapshot.ts) ----------

  /**
   * What a saved VM state depends on besides the guest: the QEMU binary (sha256) and version, machine,
   * accelerator, CPU model, and the device layout qemuArgv produces. A template made under another
   * identity is never restored (boot-snapshot.ts compares them and cold-boots instead).
   */
  async templateIdentity(): Promise<QemuIdentity> {
    this.qemuId ??= (async () => {
      const fp = await this.fingerprint();
      return qemuIdentity({
        qemu: this.qemu,
        version: fp.version,
        machine: this.opts.machine ?? 'pc',
        accel: this.accel?.accel ?? 'tcg',
      });
    })();
    return this.qemuId;
  }

  /** Write small files into a running guest through its agent, in order (each complete before the next). */
  async writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>, timeoutMs = 5000): Promise<void> {
    await this.agentCall(vm, timeoutMs, (ga) => writeFilesOverAgent(ga, files));
  }

  async close(): Promise<void> {
    for (const live of this.live.values()) {
      live.expectingExit = true;
      live.finalized = true;
      live.qmp?.close();
      live.child?.removeAllListeners('exit');
    }
    this.live.clear();
  }
}
