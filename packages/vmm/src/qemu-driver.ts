import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { type AccelProbe, probeAccel } from './accel.ts';
import { applyLimits, removeLimits, TCG_TB_MIB } from './cgroup.ts';
import type {
  DriverFingerprint,
  DriverNetwork,
  DriverVm,
  DriverVmSpec,
  ExitInfo,
  GuestAgent,
  HypervisorDriver,
  SnapshotInfo,
  StopResult,
  SuspendInfo,
} from './driver.ts';
import { assertGpusPassable, vfioArgs } from './gpu.ts';
import { checkImage } from './image-check.ts';
import { isPort } from './network.ts';
import { QmpClient } from './qmp.ts';
import { KeyedSerializer } from './state-machine.ts';

const execFileP = promisify(execFile);

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

/** True when a process with this pid exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** True when `pid` is a QEMU process serving the QMP socket `qmpPath` (guards against pid reuse). */
export function isOurQemu(pid: number, qmpPath: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return (argv[0] ?? '').includes('qemu-system') && argv.includes(`unix:${qmpPath},server=on,wait=off`);
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!processAlive(pid)) return true;
    await sleep(25);
  }
  return !processAlive(pid);
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

  constructor(opts: QemuDriverOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'qemu-driver' });
  }

  private get qemu(): string {
    return this.opts.qemuBinary ?? 'qemu-system-x86_64';
  }

  fingerprint(): Promise<DriverFingerprint> {
    this.fp ??= this.doFingerprint();
    return this.fp;
  }

  private async doFingerprint(): Promise<DriverFingerprint> {
    const caps = {
      pause: true,
      snapshot: true,
      networkModes: ['user', 'tap'] as Array<'user' | 'tap'>,
      diskFormats: ['qcow2', 'raw', 'vmdk'],
      sandbox: this.opts.sandbox !== false,
      cgroupLimits: this.opts.cgroupLimits !== false && process.getuid?.() === 0,
    };
    let version: string;
    try {
      const { stdout } = await execFileP(this.qemu, ['--version']);
      version = stdout.split('\n')[0]?.trim() ?? '';
      await execFileP('qemu-img', ['--version']);
    } catch (err) {
      return {
        driver: this.name,
        available: false,
        reason: `${this.qemu} or qemu-img is not installed (${(err as Error).message.split('\n')[0]})`,
        accel: 'none',
        capabilities: caps,
      };
    }
    const forced = this.opts.accel ?? 'auto';
    if (forced !== 'auto') {
      this.accel = {
        accel: forced,
        reason: `forced by configuration (accel=${forced})`,
        host: '',
        kernel: '',
        probedAt: new Date().toISOString(),
      };
    } else if (this.opts.probeKernel) {
      this.accel = await probeAccel({
        kernel: this.opts.probeKernel,
        cacheFile: this.opts.probeCacheFile,
        qemu: this.qemu,
      });
    } else {
      this.accel = {
        accel: 'tcg',
        reason: 'no kernel to probe KVM with',
        host: '',
        kernel: '',
        probedAt: new Date().toISOString(),
      };
    }
    this.log.info({ accel: this.accel.accel, reason: this.accel.reason }, 'qemu accelerator chosen');
    return {
      driver: this.name,
      available: true,
      accel: this.accel.accel,
      accelReason: this.accel.reason,
      version,
      capabilities: caps,
    };
  }

  onExit(listener: (info: ExitInfo) => void): void {
    this.exitListeners.push(listener);
  }

  private paths(spec: DriverVmSpec): DriverVm['paths'] {
    return {
      disk: join(spec.dir, 'disk.qcow2'),
      qmp: join(spec.dir, 'qmp.sock'),
      qga: join(spec.dir, 'qga.sock'),
      serial: join(spec.dir, 'serial.log'),
      pidfile: join(spec.dir, 'qemu.pid'),
      ...(spec.dataDiskMiB ? { data: join(spec.dir, 'data.qcow2') } : {}),
    };
  }

  async create(spec: DriverVmSpec): Promise<DriverVm> {
    await mkdir(spec.dir, { recursive: true });
    const paths = this.paths(spec);
    if (!existsSync(spec.baseDisk)) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot create VM ${spec.id}: disk image ${spec.baseDisk} does not exist`,
      );
    }
    validateSpec(spec, 'create');
    // The base comes from outside (a peer's Formpack, the images dir, an API caller): self-contained only.
    const info = await checkImage(resolve(spec.baseDisk), { format: spec.baseDiskFormat }).catch((err: unknown) => {
      if (err instanceof FormError) {
        throw new FormError(err.code, `Cannot create VM ${spec.id}: ${err.message.replace(/^Cannot /, '')}`, {
          hint: err.hint,
          cause: err,
        });
      }
      throw err;
    });
    if (info.virtualSize < 2 ** 20) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot create VM ${spec.id}: ${spec.baseDisk} is empty (${info.virtualSize} bytes)`,
      );
    }
    const want = spec.diskGiB * 2 ** 30;
    // An absolute backing name: QEMU may open the overlay as /dev/fdset/N, relative to which nothing resolves.
    const args = ['create', '-q', '-f', 'qcow2', '-b', resolve(spec.baseDisk), '-F', spec.baseDiskFormat, paths.disk];
    if (want > info.virtualSize) args.push(String(want));
    try {
      await execFileP('qemu-img', args);
    } catch (err) {
      throw new FormError('VM_IMAGE_INVALID', `Cannot create the disk of VM ${spec.id}: ${stderrOf(err)}`, {
        cause: err,
      });
    }
    if (paths.data) {
      try {
        await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', paths.data, `${spec.dataDiskMiB}M`]);
      } catch (err) {
        throw new FormError('VM_IMAGE_INVALID', `Cannot create the data disk of VM ${spec.id}: ${stderrOf(err)}`, {
          cause: err,
        });
      }
    }
    return { spec, paths };
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

  /**
   * A directory for migration sockets that QEMU can use after dropping privileges (it creates the
   * incoming socket and connects to the outgoing one). The VM dir stays root's and may sit under a
   * 0700 parent, so a dropped QEMU gets its own dir under MIGRATE_ROOT (root's, 0711), 0700 and its uid's.
   */
  private async migrationDir(vm: DriverVm): Promise<string> {
    const who = this.runAsFor(vm.spec.id);
    if (!who) {
      const dir = resolve(vm.spec.dir, 'migrate');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      return dir;
    }
    await mkdir(MIGRATE_ROOT, { recursive: true, mode: 0o711 });
    const st = await lstat(MIGRATE_ROOT);
    if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new FormError(
        'VM_HYPERVISOR',
        `Cannot snapshot or restore VM ${vm.spec.id}: ${MIGRATE_ROOT} is not a root-owned directory others cannot write`,
        {
          hint: `Remove ${MIGRATE_ROOT}; the VMM recreates it.`,
        },
      );
    }
    const dir = join(MIGRATE_ROOT, vm.spec.id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, who.uid, who.gid);
    return dir;
  }

  async start(vm: DriverVm): Promise<void> {
    await this.launch(vm, false);
  }

  private async launch(vm: DriverVm, incoming: boolean): Promise<void> {
    await this.fingerprint();
    const id = vm.spec.id;
    if (this.live.has(id)) throw new FormError('VM_BAD_STATE', `Cannot start VM ${id}: its QEMU process is running`);
    // Everything QEMU will open, checked before it runs: argv built from validated values only, the
    // overlay backed by exactly this VM's base (a revision or snapshot copied over it came from outside).
    const qemuArgs = this.args(vm, incoming);
    assertGpusPassable(vm.spec.gpus ?? [], id);
    await checkImage(resolve(vm.paths.disk), {
      format: 'qcow2',
      backing: { file: resolve(vm.spec.baseDisk), format: vm.spec.baseDiskFormat },
    });
    if (vm.paths.data && existsSync(vm.paths.data)) await checkImage(resolve(vm.paths.data), { format: 'qcow2' });
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
    const child = spawn(cmd, args as string[], { detached: true, stdio: ['ignore', logFd, logFd, ...diskFds] });
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
      const log = safeRead(logPath).trim().split('\n').slice(-5).join(' | ');
      const msg = spawnErr
        ? `cannot run ${cmd}: ${spawnErr.message}`
        : `QEMU exited${exited ? ` (code ${exited.code ?? exited.signal})` : ' (no QMP answer)'}: ${log || 'no output'}`;
      const imageProblem = /Could not open|not in qcow2|Image is not|backing|Invalid|qcow2|could not load/i.test(log);
      throw new FormError(imageProblem ? 'VM_IMAGE_INVALID' : 'VM_HYPERVISOR', `Cannot start VM ${id}: ${msg}`, {
        details: { log: log.slice(0, 2000) },
      });
    }
    let pid = child.pid ?? 0;
    try {
      pid = Number(readFileSync(vm.paths.pidfile, 'utf8').trim()) || pid;
    } catch {
      // pidfile not yet written: the child pid is QEMU itself (ip netns exec execs it)
    }
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
    this.log.info({ id, pid, incoming }, 'qemu started');
  }

  /** Start watching one live QEMU: QMP events + EOF, process exit. */
  private track(vm: DriverVm, pid: number, qmp: QmpClient, child: ChildProcess | undefined): Live {
    let markGone = (): void => {};
    const gone = new Promise<void>((r) => {
      markGone = r;
    });
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
    let info: ExitInfo;
    if (live.shutdown?.guest) {
      info = { id: vm.spec.id, kind: 'guest-poweroff', reason: `guest powered off (${live.shutdown.reason})` };
    } else if (live.shutdown) {
      info = { id: vm.spec.id, kind: 'killed', reason: `QEMU shut down by the host (${live.shutdown.reason})` };
    } else if (live.childExit?.signal) {
      info = {
        id: vm.spec.id,
        kind: 'killed',
        reason: `QEMU process ${live.pid} was killed by ${live.childExit.signal}`,
      };
    } else if (live.childExit && live.childExit.code !== 0) {
      const log = safeRead(join(vm.spec.dir, 'qemu.log')).trim().split('\n').slice(-3).join(' | ');
      info = { id: vm.spec.id, kind: 'crashed', reason: `QEMU exited with code ${live.childExit.code}: ${log}` };
    } else {
      info = {
        id: vm.spec.id,
        kind: 'killed',
        reason: `QEMU process ${live.pid} disappeared (QMP connection lost, process gone)`,
      };
    }
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

  async snapshot(vm: DriverVm, dir: string): Promise<SnapshotInfo> {
    const t0 = Date.now();
    const qmp = await this.qmp(vm);
    await mkdir(dir, { recursive: true });
    const memFile = join(dir, 'memory.mig');
    const diskFile = join(dir, 'disk.qcow2');
    // Room check: RAM image (at most guest RAM) + the overlay copy.
    const overlayBytes = statSync(vm.paths.disk).size;
    const fs = await statfs(dir);
    const free = fs.bavail * fs.bsize;
    const need = vm.spec.memMiB * 2 ** 20 + overlayBytes;
    if (free < need) {
      await rm(dir, { recursive: true, force: true });
      throw new FormError(
        'DISK_FULL',
        `Cannot snapshot VM ${vm.spec.id}: ${Math.floor(free / 2 ** 20)} MiB free in ${dir}, up to ${Math.ceil(need / 2 ** 20)} MiB needed`,
        { details: { freeBytes: free, neededBytes: need } },
      );
    }
    const wasRunning = (await qmp.execute<{ running: boolean }>('query-status')).running;
    if (wasRunning) await qmp.execute('stop');
    let downtimeMs: number | undefined;
    try {
      downtimeMs = (await this.saveMemory(vm, qmp, memFile)).downtime;
      await copyFile(vm.paths.disk, diskFile);
      if (vm.paths.data && existsSync(vm.paths.data)) await copyFile(vm.paths.data, join(dir, 'data.qcow2'));
      await writeFile(
        join(dir, 'snapshot.json'),
        JSON.stringify({
          vm: vm.spec.id,
          createdAt: new Date().toISOString(),
          memMiB: vm.spec.memMiB,
          baseDisk: vm.spec.baseDisk,
        }),
      );
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      const left = await statfs(join(dir, '..')).catch(() => undefined);
      if (left && left.bavail * left.bsize < need) {
        throw new FormError('DISK_FULL', `Cannot snapshot VM ${vm.spec.id}: the disk filled up while saving`, {
          cause: err,
        });
      }
      throw err;
    } finally {
      if (wasRunning) {
        await qmp.execute('cont').catch((err: unknown) => {
          this.log.warn({ id: vm.spec.id, err: (err as Error).message }, 'VM not resumed after its snapshot');
        });
      }
    }
    return {
      dir,
      memoryBytes: (await stat(memFile)).size,
      diskBytes: (await stat(diskFile)).size,
      totalMs: Date.now() - t0,
      downtimeMs,
    };
  }

  /**
   * `memorySha256` (boot templates): the memory file is hashed while it streams into QEMU and the VM is
   * resumed only when it matches (else VM_IMAGE_INVALID, the VM stopped): a damaged template never runs.
   */
  async restore(vm: DriverVm, dir: string, opts: { memorySha256?: string | undefined } = {}): Promise<void> {
    const memFile = join(dir, 'memory.mig');
    const diskFile = join(dir, 'disk.qcow2');
    if (!existsSync(memFile) || !existsSync(diskFile)) {
      throw new FormError('NOT_FOUND', `Cannot restore VM ${vm.spec.id}: snapshot ${dir} is incomplete or missing`);
    }
    if (this.live.has(vm.spec.id)) await this.stop(vm, { force: true });
    await copyFile(diskFile, vm.paths.disk);
    if (vm.paths.data && existsSync(join(dir, 'data.qcow2'))) await copyFile(join(dir, 'data.qcow2'), vm.paths.data);
    await this.loadMemory(vm, memFile, opts.memorySha256, `restore VM ${vm.spec.id} from ${dir}`);
  }

  /** Migrate the (stopped) VM's memory + device state into `file` through a socket we serve (mode 0600). */
  private async saveMemory(vm: DriverVm, qmp: QmpClient, file: string, hash?: Hash): Promise<{ downtime?: number }> {
    // QEMU writes the state to a unix socket we serve (not `exec:`, which the sandbox's spawn=deny forbids).
    const sock = join(await this.migrationDir(vm), 'out.sock');
    return receiveMigration(
      sock,
      file,
      this.runAsFor(vm.spec.id),
      async () => {
        await qmp.execute('migrate', { uri: `unix:${sock}` });
        return pollMigration(qmp, 120_000);
      },
      hash,
    ).finally(() => rm(dirname(sock), { recursive: true, force: true }));
  }

  /**
   * Launch the VM waiting for an incoming migration, stream `memFile` into it (hashed when `sha256` is
   * given: the VM is resumed only when it matches) and run it. On failure no process is left.
   */
  private async loadMemory(vm: DriverVm, memFile: string, sha256: string | undefined, what: string): Promise<void> {
    await this.launch(vm, true);
    const qmp = await this.qmp(vm);
    try {
      const sock = join(await this.migrationDir(vm), 'in.sock');
      await rm(sock, { force: true });
      await qmp.execute('migrate-incoming', { uri: `unix:${sock}` });
      const hash = sha256 ? createHash('sha256') : undefined;
      await sendMigration(sock, memFile, hash);
      await pollMigration(qmp, 120_000);
      await rm(dirname(sock), { recursive: true, force: true });
      const got = hash?.digest('hex');
      if (got !== undefined && got !== sha256) {
        throw new FormError(
          'VM_IMAGE_INVALID',
          `memory state ${memFile} is damaged (sha256 ${got}, expected ${sha256})`,
        );
      }
      await qmp.execute('cont');
    } catch (err) {
      await this.stop(vm, { force: true });
      const code = err instanceof FormError && err.code === 'VM_IMAGE_INVALID' ? err.code : 'VM_HYPERVISOR';
      const log = safeRead(join(vm.spec.dir, 'qemu.log')).trim().split('\n').slice(-3).join(' | ');
      throw new FormError(code, `Cannot ${what}: ${(err as Error).message}${log ? ` (QEMU: ${log})` : ''}`, {
        cause: err,
      });
    }
  }

  async suspend(vm: DriverVm, file: string): Promise<SuspendInfo> {
    const t0 = Date.now();
    const qmp = await this.qmp(vm);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const fs = await statfs(dirname(file));
    if (fs.bavail * fs.bsize < vm.spec.memMiB * 2 ** 20) {
      throw new FormError(
        'DISK_FULL',
        `Cannot suspend VM ${vm.spec.id}: ${Math.floor((fs.bavail * fs.bsize) / 2 ** 20)} MiB free in ${dirname(file)}, up to ${vm.spec.memMiB} MiB needed`,
        { hint: 'Free space on the node; the VM keeps running.' },
      );
    }
    const wasRunning = (await qmp.execute<{ running: boolean }>('query-status')).running;
    if (wasRunning) await qmp.execute('stop');
    const hash = createHash('sha256');
    try {
      await rm(file, { force: true });
      await this.saveMemory(vm, qmp, file, hash);
      await chmod(file, 0o600);
    } catch (err) {
      await rm(file, { force: true });
      if (wasRunning) await qmp.execute('cont').catch(() => undefined);
      throw new FormError('VM_HYPERVISOR', `Cannot suspend VM ${vm.spec.id}: ${(err as Error).message}`, {
        cause: err,
        hint: 'The VM keeps running.',
      });
    }
    // Migration completed: QEMU flushed and released the disks; the process ends without touching them.
    await this.stop(vm, { force: true });
    return { file, bytes: (await stat(file)).size, sha256: hash.digest('hex'), totalMs: Date.now() - t0 };
  }

  async wake(vm: DriverVm, file: string, expect: { bytes: number; sha256: string }): Promise<void> {
    const id = vm.spec.id;
    const st = await stat(file).catch(() => undefined);
    if (!st) {
      throw new FormError('VM_IMAGE_INVALID', `Cannot resume VM ${id}: its memory image ${file} is missing`, {
        hint: 'Stop the VM to discard the suspended state; the next start boots it.',
      });
    }
    if (st.size !== expect.bytes) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot resume VM ${id}: its memory image has ${st.size} bytes, ${expect.bytes} were saved (truncated or replaced)`,
        { hint: 'Stop the VM to discard the suspended state; the next start boots it.' },
      );
    }
    if (this.live.has(id)) throw new FormError('VM_BAD_STATE', `Cannot resume VM ${id}: its QEMU process is running`);
    try {
      await this.loadMemory(vm, file, expect.sha256, `resume VM ${id}`);
    } catch (err) {
      // QEMU may reject a damaged stream before it is all sent: say so when the image is not what was saved.
      if (err instanceof FormError && err.code !== 'VM_IMAGE_INVALID' && (await sha256Of(file)) !== expect.sha256) {
        throw new FormError(
          'VM_IMAGE_INVALID',
          `Cannot resume VM ${id}: memory image ${file} is damaged (sha256 differs from the saved one)`,
          {
            cause: err,
            hint: 'Stop the VM to discard the suspended state; the next start boots it.',
          },
        );
      }
      throw err;
    }
    // The guest's clock stood still while it was on disk: set it from the host (best effort; the
    // kernel's RNG is reseeded by the new vmgenid of this QEMU start and the virtio-rng).
    const ns = Date.now() * 1e6;
    void this.agentCall(vm, 5000, (ga) => ga.execute('guest-set-time', { time: ns }, 5000)).catch((err: unknown) =>
      this.log.debug({ id, err: (err as Error).message }, 'guest clock not set after resume'),
    );
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
    let pid = vm.pid;
    try {
      pid = Number(readFileSync(vm.paths.pidfile, 'utf8').trim()) || pid;
    } catch {
      // no pidfile
    }
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
    return {
      ping: (timeoutMs = 2000) =>
        this.agentCall(vm, timeoutMs, async (ga) => {
          await ga.execute('guest-ping');
        }),
      exec: (path, args, timeoutMs = 10_000) =>
        this.agentCall(vm, timeoutMs, async (ga) => {
          const { pid } = await ga.execute<{ pid: number }>('guest-exec', { path, arg: args, 'capture-output': true });
          const end = Date.now() + timeoutMs;
          for (;;) {
            const st = await ga.execute<{
              exited: boolean;
              exitcode?: number;
              signal?: number;
              'out-data'?: string;
              'err-data'?: string;
            }>('guest-exec-status', { pid });
            if (st.exited) {
              return {
                exitcode: st.exitcode ?? (st.signal ? 128 + st.signal : -1),
                stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8'),
                stderr: Buffer.from(st['err-data'] ?? '', 'base64').toString('utf8'),
              };
            }
            if (Date.now() > end) throw new FormError('TIMEOUT', `Command ${path} in VM ${vm.spec.id} did not finish`);
            await sleep(30);
          }
        }),
      readFile: (path, maxBytes = 65536, timeoutMs = 3000) =>
        this.agentCall(vm, timeoutMs, async (ga) => {
          const h = await ga.execute<number>('guest-file-open', { path, mode: 'r' });
          try {
            const r = await ga.execute<{ 'buf-b64': string }>('guest-file-read', { handle: h, count: maxBytes });
            return Buffer.from(r['buf-b64'], 'base64').toString('utf8');
          } finally {
            await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
          }
        }),
      readRange: (path, offset, maxBytes, timeoutMs = 3000) =>
        this.agentCall(vm, timeoutMs, async (ga) => {
          const h = await ga.execute<number>('guest-file-open', { path, mode: 'r' });
          try {
            const end = await ga.execute<{ position: number }>('guest-file-seek', {
              handle: h,
              offset: 0,
              whence: 'end',
            });
            const size = end.position;
            if (offset >= size || maxBytes <= 0) return { data: Buffer.alloc(0), size };
            await ga.execute('guest-file-seek', { handle: h, offset, whence: 'set' });
            const r = await ga.execute<{ 'buf-b64': string }>('guest-file-read', {
              handle: h,
              count: Math.min(maxBytes, size - offset),
            });
            return { data: Buffer.from(r['buf-b64'], 'base64'), size };
          } finally {
            await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
          }
        }),
      fsfreeze: (freeze) =>
        this.agentCall(vm, 5000, (ga) => ga.execute<number>(freeze ? 'guest-fsfreeze-freeze' : 'guest-fsfreeze-thaw')),
    };
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
      const bin = whichBinary(this.qemu);
      const binarySha256 = bin ? await sha256Of(bin) : 'unknown';
      const accel = this.accel?.accel ?? 'tcg';
      const machine = this.opts.machine ?? 'pc';
      const cpu =
        accel === 'kvm' ? `host:${/model name\s*:\s*(.*)/.exec(safeRead('/proc/cpuinfo'))?.[1] ?? '?'}` : 'qemu64';
      const ref: DriverVm = {
        spec: {
          id: 'ref',
          name: 'ref',
          vcpu: 1,
          memMiB: 256,
          dir: '/ref',
          kernel: '/ref/k',
          cmdline: 'ref',
          baseDisk: '/ref/b',
          baseDiskFormat: 'qcow2',
          diskGiB: 1,
          dataDiskMiB: 1,
          network: { mode: 'user', forwards: [], mac: '52:54:00:00:00:00' },
          agentChannel: 'ref',
        },
        paths: { disk: '/r/d', qmp: '/r/q', qga: '/r/g', serial: '/r/s', pidfile: '/r/p', data: '/r/e' },
      };
      const argv = qemuArgv(ref, { incoming: false, machine, accel, sandbox: false }).join(' ');
      return {
        version: fp.version ?? 'unknown',
        binarySha256,
        machine,
        accel,
        cpu,
        devicesSha256: createHash('sha256').update(argv).digest('hex'),
      };
    })();
    return this.qemuId;
  }

  /** Write small files into a running guest through its agent, in order (each complete before the next). */
  async writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>, timeoutMs = 5000): Promise<void> {
    await this.agentCall(vm, timeoutMs, async (ga) => {
      for (const f of files) {
        const h = await ga.execute<number>('guest-file-open', { path: f.path, mode: 'w' });
        try {
          if (f.data.length > 0) {
            await ga.execute('guest-file-write', { handle: h, 'buf-b64': Buffer.from(f.data).toString('base64') });
          }
          await ga.execute('guest-file-flush', { handle: h });
        } finally {
          await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
        }
      }
    });
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

/** The seccomp sandbox every QEMU runs under: no obsolete syscalls, no setuid, no fork/exec, no affinity/scheduler changes. */
export const QEMU_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';
/**
 * The sandbox with `-runas`: QEMU installs its seccomp filter before it drops to the -runas user, so
 * `elevateprivileges=deny` kills it at its own setuid (SIGSYS, QEMU 7.2). After the drop every uid of
 * the process is unprivileged and it holds no capabilities, so set*id cannot regain root, and
 * spawn=deny still forbids executing a setuid binary.
 */
export const QEMU_SANDBOX_RUNAS = 'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny';

/** Where dropped QEMUs find their migration sockets (root's, 0711; one 0700 dir per VM owned by its uid). */
export const MIGRATE_ROOT = '/run/formation-qemu';

/** First uid of the range `per-vm` QEMU users come from (no passwd entries needed; far above login and subuid ranges). */
export const QEMU_UID_BASE = 2_000_000_000;

/** The unprivileged uid (= gid) the QEMU of VM `id` runs as: stable per VM, one of a million. */
export function qemuUidFor(id: string): number {
  return QEMU_UID_BASE + (Number.parseInt(createHash('sha256').update(id).digest('hex').slice(0, 8), 16) % 1_000_000);
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `s` holds a control character (or a comma: QEMU's option separator). */
export function hasControlOrComma(s: string, comma = true): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || (comma && c === 0x2c)) return true;
  }
  return false;
}
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function badArg(id: string, what: string, value: unknown, rule: string, action = 'start'): FormError {
  return new FormError('VM_BAD_ARGUMENT', `Cannot ${action} VM ${id}: ${what} ${JSON.stringify(value)} ${rule}`, {
    hint: 'Values spliced into QEMU options are checked: names [A-Za-z0-9._-], ports 1-65535, paths without commas.',
  });
}

/**
 * Check every value of a spec that ends up inside QEMU's argv. QEMU parses `-netdev`/`-drive`/`-device`
 * values as comma-separated options, so a comma in a name, path, MAC or port adds options of the
 * caller's choosing (`hostfwd=…,guestfwd=…-cmd:<host command>`). Throws VM_BAD_ARGUMENT.
 */
export function validateSpec(s: DriverVmSpec, action = 'start'): void {
  const id = typeof s.id === 'string' && NAME_RE.test(s.id) ? s.id : 'with a bad id';
  const bad = (what: string, value: unknown, rule: string): FormError => badArg(id, what, value, rule, action);
  if (!NAME_RE.test(String(s.id))) throw bad('id', s.id, 'is not a name (1-64 of [A-Za-z0-9._-])');
  if (!NAME_RE.test(String(s.name))) throw bad('name', s.name, 'is not a name (1-64 of [A-Za-z0-9._-])');
  if (!Number.isInteger(s.vcpu) || s.vcpu < 1 || s.vcpu > 1024) throw bad('vcpu', s.vcpu, 'is not 1..1024');
  if (!Number.isInteger(s.memMiB) || s.memMiB < 16 || s.memMiB > 16 * 2 ** 20)
    throw bad('memMiB', s.memMiB, 'is not a memory size in MiB');
  for (const [what, path] of [
    ['dir', s.dir],
    ['kernel', s.kernel],
    ['initramfs', s.initramfs],
    ['base disk', s.baseDisk],
  ] as const) {
    if (path === undefined && what === 'initramfs') continue;
    if (typeof path !== 'string' || path === '' || hasControlOrComma(path)) {
      throw bad(what, path, 'is not a path without commas or control characters');
    }
  }
  if (typeof s.cmdline !== 'string' || s.cmdline.length > 8192 || hasControlOrComma(s.cmdline, false)) {
    throw bad('kernel command line', s.cmdline, 'is not one line of at most 8192 characters');
  }
  if (!NAME_RE.test(String(s.agentChannel))) throw bad('agent channel', s.agentChannel, 'is not a name');
  const net: DriverNetwork = s.network;
  if (!MAC_RE.test(String(net.mac))) throw bad('MAC', net.mac, 'is not a MAC address');
  if (net.mode === 'user') {
    if (!Array.isArray(net.forwards)) throw bad('forwards', net.forwards, 'is not a list');
    for (const f of net.forwards) {
      if (!isPort(f.guest)) throw bad('guest port', f.guest, 'is not an integer 1..65535');
      if (!isPort(f.host)) throw bad('host port', f.host, 'is not an integer 1..65535');
    }
  } else if (net.mode === 'tap') {
    if (!IFNAME_RE.test(String(net.tap))) throw bad('TAP', net.tap, 'is not an interface name');
    if (net.netns !== undefined && !NAME_RE.test(String(net.netns))) throw bad('netns', net.netns, 'is not a name');
  } else {
    throw bad('network mode', (net as { mode: unknown }).mode, "is not 'user' or 'tap'");
  }
}

export interface QemuArgvOptions {
  incoming: boolean;
  machine?: 'pc' | 'q35' | 'microvm' | undefined;
  accel?: 'kvm' | 'tcg' | 'none' | undefined;
  /** `-sandbox` (default on). */
  sandbox?: boolean | undefined;
  /** Drop to this uid/gid once set up (`-runas`). */
  runAs?: { uid: number; gid: number } | undefined;
  /** Open the disk (fds 3 rw, 4 ro) and data disk (5, 6) from fd sets 1 and 2 instead of by path. */
  diskFds?: boolean | undefined;
}

/**
 * QEMU's argv for one VM, from a validated spec only (`validateSpec` first: VM_BAD_ARGUMENT for any
 * value that could add options). Pure.
 *
 * @example
 * qemuArgv(vm, { incoming: false }) // ['-name', 'guest=vm-1,debug-threads=off', …, '-sandbox', QEMU_SANDBOX, …]
 */
export function qemuArgv(vm: DriverVm, o: QemuArgvOptions): string[] {
  validateSpec(vm.spec);
  const s = vm.spec;
  const p = {
    disk: resolve(vm.paths.disk),
    qmp: resolve(vm.paths.qmp),
    qga: resolve(vm.paths.qga),
    serial: resolve(vm.paths.serial),
    pidfile: resolve(vm.paths.pidfile),
    data: vm.paths.data ? resolve(vm.paths.data) : undefined,
  };
  for (const [what, path] of Object.entries(p)) {
    if (path !== undefined && hasControlOrComma(path))
      throw badArg(s.id, what, path, 'has a comma or control character');
  }
  const machine = o.machine ?? 'pc';
  const bus = machine === 'microvm' ? 'device' : 'pci';
  const accel = o.accel === 'kvm' ? 'kvm' : 'tcg';
  const a: string[] = [
    '-name',
    `guest=${s.id},debug-threads=off`,
    '-accel',
    // TCG's translation cache defaults to 1 GiB and grows with every new piece of guest code run: a
    // busy guest then outgrows the VM's memory cgroup and is OOM-killed. Bound it (the cgroup counts it).
    accel === 'tcg' ? `tcg,tb-size=${TCG_TB_MIB}` : accel,
    '-M',
    machine,
    '-m',
    String(s.memMiB),
    '-smp',
    String(s.vcpu),
    '-nodefaults',
    '-nographic',
    '-no-user-config',
  ];
  if (accel === 'kvm') a.push('-cpu', 'host');
  if (o.runAs) {
    for (const n of [o.runAs.uid, o.runAs.gid]) {
      if (!Number.isInteger(n) || n < 1 || n > 4_294_967_294)
        throw badArg(s.id, 'runAs id', n, 'is not a non-root uid/gid');
    }
    a.push('-runas', `${o.runAs.uid}:${o.runAs.gid}`);
  }
  if (o.sandbox !== false) a.push('-sandbox', o.runAs ? QEMU_SANDBOX_RUNAS : QEMU_SANDBOX);
  a.push('-chardev', `file,id=ser0,path=${p.serial},append=on`, '-serial', 'chardev:ser0');
  a.push('-kernel', resolve(s.kernel));
  if (s.initramfs) a.push('-initrd', resolve(s.initramfs));
  // microvm under TCG: skip PIT calibration, which hangs ~1 boot in 4 (PLATFORM.md §3).
  const khz = machine === 'microvm' && accel === 'tcg' ? hostTscKhz() : undefined;
  a.push('-append', khz ? `${s.cmdline} tsc_early_khz=${khz}` : s.cmdline);
  let disk = p.disk;
  let data = p.data;
  // fdset disks: QEMU's image locks sit on the open files of the set, which stay open for the VM's
  // life, so the read-only one's lock would refuse the write lock when the disk is activated again
  // (`cont` after a snapshot). The driver itself never runs two QEMUs on one overlay.
  let lock = '';
  if (o.diskFds) {
    lock = ',file.locking=off';
    a.push('-add-fd', 'fd=3,set=1', '-add-fd', 'fd=4,set=1');
    disk = '/dev/fdset/1';
    if (data) {
      a.push('-add-fd', 'fd=5,set=2', '-add-fd', 'fd=6,set=2');
      data = '/dev/fdset/2';
    }
  }
  a.push(
    '-drive',
    `file=${disk},if=none,id=d0,format=qcow2,discard=unmap${lock}`,
    '-device',
    `virtio-blk-${bus},drive=d0`,
  );
  // The data disk comes second (so the root stays /dev/vda); the guest finds it by its serial.
  if (data) {
    a.push(
      '-drive',
      `file=${data},if=none,id=d1,format=qcow2,discard=unmap${lock}`,
      '-device',
      `virtio-blk-${bus},drive=d1,serial=form-data`,
    );
  }
  if (s.network.mode === 'user') {
    const fwd = s.network.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join('');
    a.push('-netdev', `user,id=n0${s.network.restrict ? ',restrict=on' : ''}${fwd}`);
  } else {
    a.push('-netdev', `tap,id=n0,ifname=${s.network.tap},script=no,downscript=no`);
  }
  a.push('-device', `virtio-net-${bus},netdev=n0,mac=${s.network.mac}`);
  a.push(...vfioArgs(s.gpus, machine, s.id));
  // Entropy from the host: without it the guest's crng is not ready until ~4 s into a TCG boot, and
  // first-boot key generation (ssh host key, the attestation key) blocks on it.
  a.push('-object', 'rng-random,id=rng0,filename=/dev/urandom', '-device', `virtio-rng-${bus},rng=rng0`);
  // A VM generation ID, new at every QEMU start (guid=auto): a guest kernel with the vmgenid driver reseeds
  // its RNG when a restored snapshot sees a new one (boot snapshots also reseed from the guest's init).
  if (machine !== 'microvm') a.push('-device', 'vmgenid,guid=auto');
  a.push(
    '-device',
    `virtio-serial-${bus}`,
    '-chardev',
    `socket,id=qga0,path=${p.qga},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=qga0,name=${s.agentChannel}`,
  );
  a.push('-qmp', `unix:${p.qmp},server=on,wait=off`, '-pidfile', p.pidfile);
  if (o.incoming) a.push('-incoming', 'defer');
  return a;
}

/** Serve `sock` for one outgoing migration and write what QEMU sends to `file`; `run` starts and awaits it. */
async function receiveMigration<T>(
  sock: string,
  file: string,
  owner: { uid: number; gid: number } | undefined,
  run: () => Promise<T>,
  hash?: Hash,
): Promise<T> {
  await rm(sock, { force: true });
  const server = createServer();
  let conn: Socket | undefined;
  const written = new Promise<void>((ok, fail) => {
    server.once('connection', (c) => {
      conn = c;
      server.close();
      if (hash) c.on('data', (d: Buffer) => hash.update(d));
      pipeline(c, createWriteStream(file, { mode: 0o600 })).then(ok, fail);
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(resolve(sock), ok);
  });
  // QEMU connects after dropping to its own uid: the socket must be its to write to.
  if (owner) await chown(sock, owner.uid, owner.gid);
  try {
    const r = await run();
    await written;
    return r;
  } finally {
    conn?.destroy();
    server.close();
    await rm(sock, { force: true });
  }
}

/** Stream a saved state file into QEMU's incoming migration socket (hashing what it sends into `hash`). */
async function sendMigration(sock: string, file: string, hash?: Hash): Promise<void> {
  const c = await new Promise<Socket>((ok, fail) => {
    const s = connect(sock);
    s.once('connect', () => ok(s));
    s.once('error', fail);
  });
  const src = createReadStream(file);
  if (hash) src.on('data', (d) => hash.update(d));
  await pipeline(src, c);
}

async function pollMigration(qmp: QmpClient, timeoutMs: number): Promise<{ downtime?: number }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await qmp.execute<{ status?: string; downtime?: number; 'error-desc'?: string }>('query-migrate');
    if (r.status === 'completed') return { downtime: r.downtime };
    if (r.status === 'failed' || r.status === 'cancelled') {
      throw new FormError('VM_HYPERVISOR', `Migration ${r.status}: ${r['error-desc'] ?? 'no detail'}`);
    }
    if (Date.now() > end) throw new FormError('TIMEOUT', `Migration did not complete within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** `qemu-img info` of an image; a corrupt or unreadable image is VM_IMAGE_INVALID. */
export async function qemuImgInfo(path: string): Promise<{ format: string; virtualSize: number; actualSize: number }> {
  try {
    const { stdout } = await execFileP('qemu-img', ['info', '-U', '--output=json', path]);
    const j = JSON.parse(stdout) as { format: string; 'virtual-size': number; 'actual-size'?: number };
    if (j.format === 'qcow2') {
      // qemu-img check catches a corrupt header/tables that info alone accepts.
      await execFileP('qemu-img', ['check', '-U', '-q', '-f', j.format, path]).catch((err: unknown) => {
        throw new FormError('VM_IMAGE_INVALID', `Image ${path} is corrupt: ${stderrOf(err)}`);
      });
    }
    return { format: j.format, virtualSize: j['virtual-size'], actualSize: j['actual-size'] ?? 0 };
  } catch (err) {
    if (err instanceof FormError) throw err;
    throw new FormError('VM_IMAGE_INVALID', `Cannot read image ${path}: ${stderrOf(err)}`, { cause: err });
  }
}

/** What a saved VM state was made under (see QemuDriver.templateIdentity). */
export interface QemuIdentity {
  version: string;
  binarySha256: string;
  machine: string;
  accel: string;
  cpu: string;
  devicesSha256: string;
}

/** The file `bin` runs as (PATH lookup for a bare name), or undefined. */
function whichBinary(bin: string): string | undefined {
  if (bin.includes('/')) return existsSync(bin) ? resolve(bin) : undefined;
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (d && existsSync(join(d, bin))) return join(d, bin);
  }
  return undefined;
}

function sha256Of(path: string): Promise<string> {
  return new Promise((ok, fail) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('error', fail)
      .on('end', () => ok(h.digest('hex')));
  });
}

/** Host CPU frequency in kHz from /proc/cpuinfo (TCG's rdtsc follows the host TSC). */
function hostTscKhz(): number | undefined {
  const m = /cpu MHz\s*:\s*([\d.]+)/.exec(safeRead('/proc/cpuinfo'));
  return m ? Math.floor(Number(m[1]) * 1000) : undefined;
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n')[0] ?? '';
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
