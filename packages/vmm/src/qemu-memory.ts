import { createHash, type Hash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import type { DriverVm, SnapshotInfo, StopResult, SuspendInfo } from './driver.ts';
import { migrationDir, pollMigration, receiveMigration } from './qemu-migration.ts';
import { safeRead } from './qemu-process.ts';
import type { QmpClient } from './qmp.ts';

// A VM's memory + device state saved to a file and loaded back into a new QEMU: snapshots, restores
// (boot templates), suspend and wake. The QEMU driver owns the processes; these functions use it only
// through `QemuMemoryHost`.

/** What the memory machinery needs of the QEMU driver. */
export interface QemuMemoryHost {
  readonly log: Logger;
  /** Whether VM `id` has a QEMU process we track. */
  isLive(id: string): boolean;
  /** The VM's QMP connection (VM_BAD_STATE when no process runs). */
  qmp(vm: DriverVm): Promise<QmpClient>;
  /**
   * Launch QEMU waiting for an incoming migration (`-incoming defer`) with the open file `memoryFd`
   * inherited; resolves to the fd number QEMU has it under (for `migrate-incoming fd:<n>`).
   */
  launchIncoming(vm: DriverVm, memoryFd: number): Promise<number>;
  stop(vm: DriverVm, opts: { force: true }): Promise<StopResult>;
  /** The uid/gid QEMU of VM `id` drops to, or undefined when it stays as the VMM's user. */
  runAsFor(id: string): { uid: number; gid: number } | undefined;
  /** Run `fn` with a fresh guest-agent connection (one client at a time per VM). */
  agentCall<T>(vm: DriverVm, timeoutMs: number, fn: (ga: QmpClient) => Promise<T>): Promise<T>;
}

/** Memory state and a copy of the disks of a running (or paused) VM into `dir`; the VM runs on after. */
export async function snapshotVm(host: QemuMemoryHost, vm: DriverVm, dir: string): Promise<SnapshotInfo> {
  const t0 = Date.now();
  const qmp = await host.qmp(vm);
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
    downtimeMs = (await saveMemory(host, vm, qmp, memFile)).downtime;
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
        host.log.warn({ id: vm.spec.id, err: (err as Error).message }, 'VM not resumed after its snapshot');
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
export async function restoreVm(
  host: QemuMemoryHost,
  vm: DriverVm,
  dir: string,
  opts: { memorySha256?: string | undefined; paused?: boolean | undefined } = {},
): Promise<void> {
  const memFile = join(dir, 'memory.mig');
  const diskFile = join(dir, 'disk.qcow2');
  if (!existsSync(memFile) || !existsSync(diskFile)) {
    throw new FormError('NOT_FOUND', `Cannot restore VM ${vm.spec.id}: snapshot ${dir} is incomplete or missing`);
  }
  if (host.isLive(vm.spec.id)) await host.stop(vm, { force: true });
  const t0 = Date.now();
  await copyFile(diskFile, vm.paths.disk);
  if (vm.paths.data && existsSync(join(dir, 'data.qcow2'))) await copyFile(join(dir, 'data.qcow2'), vm.paths.data);
  const copyMs = Date.now() - t0;
  const phases = await loadMemory(host, vm, memFile, opts.memorySha256, `restore VM ${vm.spec.id} from ${dir}`, {
    paused: opts.paused === true,
  });
  host.log.info({ id: vm.spec.id, copyMs, ...phases }, 'restore phases');
}

/** Migrate the (stopped) VM's memory + device state into `file` through a socket we serve (mode 0600). */
export async function saveMemory(
  host: QemuMemoryHost,
  vm: DriverVm,
  qmp: QmpClient,
  file: string,
  hash?: Hash,
): Promise<{ downtime?: number }> {
  // QEMU writes the state to a unix socket we serve (not `exec:`, which the sandbox's spawn=deny forbids).
  const sock = join(await migrationDir(vm, host.runAsFor(vm.spec.id)), 'out.sock');
  return receiveMigration(
    sock,
    file,
    host.runAsFor(vm.spec.id),
    async () => {
      await qmp.execute('migrate', { uri: `unix:${sock}` });
      return pollMigration(qmp, 120_000);
    },
    hash,
  ).finally(() => rm(dirname(sock), { recursive: true, force: true }));
}

/**
 * Launch the VM waiting for an incoming migration and let QEMU read `memFile` itself (an inherited
 * fd: no copy through this process, which under CPU contention cost ~4x the load), hashing the file
 * beside it when `sha256` is given: the VM is resumed only when it matches (`paused`: it is left paused
 * once it matches, for a later `cont`). On failure no process is left.
 */
export async function loadMemory(
  host: QemuMemoryHost,
  vm: DriverVm,
  memFile: string,
  sha256: string | undefined,
  what: string,
  opts: { paused?: boolean } = {},
): Promise<{ launchMs: number; loadMs: number; contMs: number }> {
  let t = Date.now();
  const lap = (): number => {
    const now = Date.now();
    const ms = now - t;
    t = now;
    return ms;
  };
  // The hash runs from the start, beside QEMU's launch and load (it took ~0.3 s after the load when it
  // started with the load).
  const hashing = sha256 ? sha256File(memFile) : Promise.resolve(undefined);
  hashing.catch(() => undefined); // awaited below; a read error then fails the load
  const file = await open(memFile, 'r');
  let qemuFd: number;
  try {
    qemuFd = await host.launchIncoming(vm, file.fd);
  } finally {
    await file.close(); // QEMU holds its own copy
  }
  try {
    const qmp = await host.qmp(vm);
    const launchMs = lap();
    await qmp.execute('migrate-incoming', { uri: `fd:${qemuFd}` });
    const loaded = await pollMigration(qmp, 120_000).then(
      () => undefined,
      (err: unknown) => err,
    );
    const loadMs = lap();
    // A damaged image is said as such, also when QEMU rejected it before the hash was done.
    const got = await hashing;
    if (got !== undefined && got !== sha256) {
      throw new FormError('VM_IMAGE_INVALID', `memory state ${memFile} is damaged (sha256 ${got}, expected ${sha256})`);
    }
    if (loaded) throw loaded;
    if (!opts.paused) await qmp.execute('cont');
    return { launchMs, loadMs, contMs: lap() };
  } catch (err) {
    await host.stop(vm, { force: true });
    const code = err instanceof FormError && err.code === 'VM_IMAGE_INVALID' ? err.code : 'VM_HYPERVISOR';
    const log = safeRead(join(vm.spec.dir, 'qemu.log')).trim().split('\n').slice(-3).join(' | ');
    throw new FormError(code, `Cannot ${what}: ${(err as Error).message}${log ? ` (QEMU: ${log})` : ''}`, {
      cause: err,
    });
  }
}

/** Save the VM's memory to `file` (0600, hashed) and end its QEMU; on failure the VM keeps running. */
export async function suspendVm(host: QemuMemoryHost, vm: DriverVm, file: string): Promise<SuspendInfo> {
  const t0 = Date.now();
  const qmp = await host.qmp(vm);
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
    await saveMemory(host, vm, qmp, file, hash);
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
  await host.stop(vm, { force: true });
  return { file, bytes: (await stat(file)).size, sha256: hash.digest('hex'), totalMs: Date.now() - t0 };
}

/** Run a suspended VM again from its memory image, checked against what `suspendVm` saved. */
export async function wakeVm(
  host: QemuMemoryHost,
  vm: DriverVm,
  file: string,
  expect: { bytes: number; sha256: string },
): Promise<void> {
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
  if (host.isLive(id)) throw new FormError('VM_BAD_STATE', `Cannot resume VM ${id}: its QEMU process is running`);
  try {
    await loadMemory(host, vm, file, expect.sha256, `resume VM ${id}`);
  } catch (err) {
    // QEMU may reject a damaged stream before it is all sent: say so when the image is not what was saved.
    if (err instanceof FormError && err.code !== 'VM_IMAGE_INVALID' && (await sha256File(file)) !== expect.sha256) {
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
  void host
    .agentCall(vm, 5000, (ga) => ga.execute('guest-set-time', { time: ns }, 5000))
    .catch((err: unknown) => host.log.debug({ id, err: (err as Error).message }, 'guest clock not set after resume'));
}
