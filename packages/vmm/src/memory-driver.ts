import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { chmod, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { FormError } from '@formation/interface';
import { processAlive } from '@formation/service/process';
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
import { type GuestFs, guestExec } from './memory-guest.ts';

export { memoryFormpack } from './memory-formpack.ts';
export { memoryVmManager } from './memory-vmm.ts';

/** The word in a memory VM's process command line that marks it as ours (with the VM id after it). */
const MARK = 'form-memory-vm';

/**
 * A `HypervisorDriver` without a hypervisor, for tests that exercise the VM manager, its API and the
 * node's controller without root, KVM or QEMU. It passes the same `runDriverCompliance` suite as QEMU.
 *
 * Each running VM is one tiny real process (`sh -c read`, so pids, kills from outside and re-attach by
 * a new driver instance behave as with QEMU; it exits when the test process does). The guest is
 * simulated (`memory-guest.ts`): its disk is a JSON file system in the VM dir, its agent runs a small
 * shell subset, and every boot prints `FORM-INIT-READY` on the serial log.
 *
 * @example new VmManager({ driver: new MemoryDriver(), store, network, logger, ... })
 */
export class MemoryDriver implements HypervisorDriver {
  readonly name = 'memory';
  private readonly live = new Map<string, { pid: number; child?: ChildProcess; paused: boolean; expecting: boolean }>();
  private readonly listeners: Array<(info: ExitInfo) => void> = [];
  private timer: NodeJS.Timeout | undefined;

  async fingerprint(): Promise<DriverFingerprint> {
    return {
      driver: this.name,
      available: true,
      accel: 'tcg',
      accelReason: 'memory driver: the guest is simulated in this process (no CPU is emulated)',
      version: '1',
      capabilities: {
        pause: true,
        snapshot: true,
        networkModes: ['user', 'tap'],
        diskFormats: ['qcow2', 'raw', 'vmdk'],
        sandbox: false,
        cgroupLimits: false,
      },
    };
  }

  onExit(listener: (info: ExitInfo) => void): void {
    this.listeners.push(listener);
  }

  async create(spec: DriverVmSpec): Promise<DriverVm> {
    if (!existsSync(spec.baseDisk)) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot create VM ${spec.id}: disk image ${spec.baseDisk} does not exist`,
      );
    }
    await mkdir(spec.dir, { recursive: true });
    const paths: DriverVm['paths'] = {
      disk: join(spec.dir, 'disk.json'),
      qmp: join(spec.dir, 'monitor'),
      qga: join(spec.dir, 'agent'),
      serial: join(spec.dir, 'serial.log'),
      pidfile: join(spec.dir, 'vm.pid'),
      ...(spec.dataDiskMiB ? { data: join(spec.dir, 'data.json') } : {}),
    };
    writeFileSync(paths.disk, JSON.stringify({ '/etc/hostname': `${spec.name}\n` } satisfies GuestFs));
    if (paths.data) writeFileSync(paths.data, '{}');
    return { spec, paths };
  }

  async start(vm: DriverVm, opts: { resume?: boolean } = {}): Promise<void> {
    const id = vm.spec.id;
    if (this.live.has(id) || (vm.pid && isOurs(vm.pid, id))) {
      throw new FormError('VM_BAD_STATE', `Cannot start VM ${id}: its process is running`);
    }
    if (!existsSync(vm.paths.disk)) throw new FormError('VM_IMAGE_INVALID', `Cannot start VM ${id}: its disk is gone`);
    // stdin is a pipe this process holds: when the test process ends, `read` sees EOF and the VM ends too.
    const child = spawn('/bin/sh', ['-c', 'read _', MARK, id], { stdio: ['pipe', 'ignore', 'ignore'] });
    const pid = child.pid;
    if (!pid) throw new FormError('VM_HYPERVISOR', `Cannot start VM ${id}: the process did not start`);
    child.unref();
    (child.stdin as Socket | null)?.unref();
    child.on('error', () => undefined);
    vm.pid = pid;
    writeFileSync(vm.paths.pidfile, `${pid}\n`);
    this.live.set(id, { pid, child, paused: false, expecting: false });
    if (opts.resume) appendFileSync(vm.paths.serial, `[memory] ${vm.spec.name} resumed from its memory image\n`);
    else {
      appendFileSync(
        vm.paths.serial,
        `[memory] ${vm.spec.name} booting (${vm.spec.vcpu} vCPU, ${vm.spec.memMiB} MiB)\nFORM-INIT-READY\n`,
      );
    }
    this.watch();
  }

  async stop(vm: DriverVm, opts: { timeoutMs?: number; force?: boolean } = {}): Promise<StopResult> {
    const t0 = Date.now();
    const l = this.live.get(vm.spec.id);
    if (!l) return { forced: false, ms: 0 };
    l.expecting = true;
    let forced = Boolean(opts.force);
    if (!forced && l.paused) {
      // A paused guest cannot power itself off: wait as QEMU would, then kill.
      await sleep(opts.timeoutMs ?? 10_000);
      forced = true;
    }
    kill(l.pid, forced ? 'SIGKILL' : 'SIGTERM');
    await waitGone(l.pid, 5000);
    this.settle(vm);
    return { forced, ms: Date.now() - t0 };
  }

  async restart(vm: DriverVm, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.stop(vm, opts);
    await this.start(vm);
  }

  async pause(vm: DriverVm): Promise<void> {
    this.running(vm, 'pause').paused = true;
  }

  async resume(vm: DriverVm): Promise<void> {
    this.running(vm, 'resume').paused = false;
  }

  async snapshot(vm: DriverVm, dir: string): Promise<SnapshotInfo> {
    const t0 = Date.now();
    const l = this.running(vm, 'snapshot');
    await mkdir(dir, { recursive: true });
    const memory = JSON.stringify({ paused: l.paused, at: new Date().toISOString() });
    writeFileSync(join(dir, 'memory.json'), memory);
    await cp(vm.paths.disk, join(dir, 'disk.json'));
    return {
      dir,
      memoryBytes: memory.length,
      diskBytes: readFileSync(vm.paths.disk).length,
      totalMs: Date.now() - t0,
    };
  }

  async restore(vm: DriverVm, dir: string, opts: { paused?: boolean | undefined } = {}): Promise<void> {
    if (!existsSync(join(dir, 'memory.json')) || !existsSync(join(dir, 'disk.json'))) {
      throw new FormError('NOT_FOUND', `Cannot restore VM ${vm.spec.id}: snapshot ${dir} is incomplete or missing`);
    }
    if (this.live.has(vm.spec.id)) await this.stop(vm, { force: true });
    await cp(join(dir, 'disk.json'), vm.paths.disk);
    await this.start(vm);
    if (opts.paused) await this.pause(vm);
  }

  /** The image is the simulated guest's memory: its `/tmp` files (the JSON disk keeps the rest). */
  async suspend(vm: DriverVm, file: string): Promise<SuspendInfo> {
    const t0 = Date.now();
    const l = this.running(vm, 'suspend');
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const fs = JSON.parse(readFileSync(vm.paths.disk, 'utf8')) as GuestFs;
    const memory = Object.fromEntries(Object.entries(fs).filter(([k]) => k.startsWith('/tmp/')));
    const image = Buffer.from(JSON.stringify({ v: 1, vm: vm.spec.id, paused: l.paused, memory }));
    await rm(file, { force: true });
    await writeFile(file, image, { mode: 0o600 });
    await chmod(file, 0o600);
    // What was in memory is gone with the process: the disk keeps only what is not under /tmp.
    for (const k of Object.keys(memory)) delete fs[k];
    writeFileSync(vm.paths.disk, JSON.stringify(fs));
    await this.stop(vm, { force: true });
    return {
      file,
      bytes: image.length,
      sha256: createHash('sha256').update(image).digest('hex'),
      totalMs: Date.now() - t0,
    };
  }

  async wake(vm: DriverVm, file: string, expect: { bytes: number; sha256: string }): Promise<void> {
    const id = vm.spec.id;
    const hint = 'Stop the VM to discard the suspended state; the next start boots it.';
    const st = await stat(file).catch(() => undefined);
    if (!st)
      throw new FormError('VM_IMAGE_INVALID', `Cannot resume VM ${id}: its memory image ${file} is missing`, { hint });
    const image = await readFile(file);
    if (image.length !== expect.bytes) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot resume VM ${id}: its memory image has ${image.length} bytes, ${expect.bytes} were saved (truncated or replaced)`,
        { hint },
      );
    }
    const got = createHash('sha256').update(image).digest('hex');
    if (got !== expect.sha256) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot resume VM ${id}: memory image ${file} is damaged (sha256 ${got}, expected ${expect.sha256})`,
        { hint },
      );
    }
    const saved = JSON.parse(image.toString('utf8')) as { memory: GuestFs };
    await this.start(vm, { resume: true });
    const fs = JSON.parse(readFileSync(vm.paths.disk, 'utf8')) as GuestFs;
    writeFileSync(vm.paths.disk, JSON.stringify({ ...fs, ...saved.memory }));
  }

  async replaceDisk(vm: DriverVm, image: string): Promise<void> {
    if (this.live.has(vm.spec.id)) {
      throw new FormError('VM_BAD_STATE', `Cannot replace the disk of VM ${vm.spec.id}: it runs`, {
        hint: 'Stop the VM first.',
      });
    }
    // A memory VM's disk is its guest file system as JSON (what `commit` copies): nothing else is one.
    let fs: unknown;
    try {
      fs = JSON.parse(await readFile(image, 'utf8'));
    } catch (err) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot replace the disk of VM ${vm.spec.id}: ${image} is not a disk of this driver`,
        {
          cause: err,
        },
      );
    }
    if (
      typeof fs !== 'object' ||
      fs === null ||
      Array.isArray(fs) ||
      Object.values(fs).some((v) => typeof v !== 'string')
    ) {
      throw new FormError(
        'VM_IMAGE_INVALID',
        `Cannot replace the disk of VM ${vm.spec.id}: ${image} is not a disk of this driver`,
      );
    }
    const tmp = `${vm.paths.disk}.rev`;
    await writeFile(tmp, JSON.stringify(fs));
    renameSync(tmp, vm.paths.disk);
  }

  async destroy(vm: DriverVm): Promise<void> {
    if (this.live.has(vm.spec.id)) await this.stop(vm, { force: true });
    else if (vm.pid && isOurs(vm.pid, vm.spec.id)) {
      kill(vm.pid, 'SIGKILL');
      await waitGone(vm.pid, 3000);
    }
    vm.pid = undefined;
    await rm(vm.spec.dir, { recursive: true, force: true });
  }

  async recover(vm: DriverVm): Promise<'running' | 'paused' | 'gone'> {
    const l = this.live.get(vm.spec.id);
    if (l) return l.paused ? 'paused' : 'running';
    let pid = vm.pid;
    try {
      pid = Number(readFileSync(vm.paths.pidfile, 'utf8').trim()) || pid;
    } catch {
      // no pidfile
    }
    if (!pid || !isOurs(pid, vm.spec.id)) {
      vm.pid = undefined;
      return 'gone';
    }
    vm.pid = pid;
    this.live.set(vm.spec.id, { pid, paused: false, expecting: false });
    this.watch();
    return 'running';
  }

  async status(vm: DriverVm): Promise<'running' | 'paused' | 'stopped'> {
    const l = this.live.get(vm.spec.id);
    if (!l) return 'stopped';
    return l.paused ? 'paused' : 'running';
  }

  agent(vm: DriverVm): GuestAgent {
    const answering = (): void => {
      const l = this.live.get(vm.spec.id);
      if (!l) throw new FormError('VM_BAD_STATE', `Cannot reach the agent of VM ${vm.spec.id}: it is not running`);
      if (l.paused) throw new FormError('TIMEOUT', `The agent of VM ${vm.spec.id} does not answer: it is paused`);
    };
    const disk = (): GuestFs => JSON.parse(readFileSync(vm.paths.disk, 'utf8')) as GuestFs;
    return {
      ping: async () => answering(),
      exec: async (path, args) => {
        answering();
        const fs = disk();
        const r = guestExec(fs, path, args);
        writeFileSync(vm.paths.disk, JSON.stringify(fs));
        return r;
      },
      readFile: async (path, maxBytes = 65536) => {
        answering();
        const content = disk()[path];
        if (content === undefined)
          throw new FormError('NOT_FOUND', `Cannot read ${path} in VM ${vm.spec.id}: no such file`);
        return content.slice(0, maxBytes);
      },
      readRange: async (path, offset, maxBytes) => {
        answering();
        const content = disk()[path];
        if (content === undefined)
          throw new FormError('NOT_FOUND', `Cannot read ${path} in VM ${vm.spec.id}: no such file`);
        const bytes = Buffer.from(content);
        return { data: bytes.subarray(offset, offset + Math.max(0, maxBytes)), size: bytes.length };
      },
      fsfreeze: async () => {
        answering();
        return 1;
      },
    };
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.live.clear();
  }

  private running(vm: DriverVm, action: string): { pid: number; paused: boolean; expecting: boolean } {
    const l = this.live.get(vm.spec.id);
    if (!l) throw new FormError('VM_BAD_STATE', `Cannot ${action} VM ${vm.spec.id}: its process is not running`);
    return l;
  }

  /** Forget a VM whose process ended; report it unless we ended it ourselves. */
  private settle(vm: DriverVm | string): void {
    const id = typeof vm === 'string' ? vm : vm.spec.id;
    const l = this.live.get(id);
    if (!l) return;
    this.live.delete(id);
    if (typeof vm !== 'string') vm.pid = undefined;
    if (l.expecting) return;
    const info: ExitInfo = { id, kind: 'killed', reason: `the process of VM ${id} (pid ${l.pid}) ended from outside` };
    for (const listener of this.listeners) listener(info);
  }

  /** Notice processes that end without us (killed from outside), like QEMU's monitor EOF. */
  private watch(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const [id, l] of this.live) if (!l.expecting && !processAlive(l.pid)) this.settle(id);
      if (this.live.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }, 50);
    this.timer.unref();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** A live process that is this VM's (its command line names it): a stale pid is never trusted. */
function isOurs(pid: number, id: string): boolean {
  if (!processAlive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes(MARK) && argv.includes(id);
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (processAlive(pid)) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}
