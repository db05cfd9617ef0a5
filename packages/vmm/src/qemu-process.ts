import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import { processAlive } from '@formation/service/process';
import type { DriverVm, ExitInfo } from './driver.ts';

export { processAlive };

// Host-side helpers of the QEMU driver: processes (/proc), the per-VM uid, qemu-img, files.

export const execFileP = promisify(execFile);

/** True when `pid` is a QEMU process serving the QMP socket `qmpPath` (guards against pid reuse). */
export function isOurQemu(pid: number, qmpPath: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return (argv[0] ?? '').includes('qemu-system') && argv.includes(`unix:${qmpPath},server=on,wait=off`);
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!processAlive(pid)) return true;
    await sleep(25);
  }
  return !processAlive(pid);
}

/** First uid of the range `per-vm` QEMU users come from (no passwd entries needed; far above login and subuid ranges). */
export const QEMU_UID_BASE = 2_000_000_000;

/** The unprivileged uid (= gid) the QEMU of VM `id` runs as: stable per VM, one of a million. */
export function qemuUidFor(id: string): number {
  return QEMU_UID_BASE + (Number.parseInt(createHash('sha256').update(id).digest('hex').slice(0, 8), 16) % 1_000_000);
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

/** The file `bin` runs as (PATH lookup for a bare name), or undefined. */
export function whichBinary(bin: string): string | undefined {
  if (bin.includes('/')) return existsSync(bin) ? resolve(bin) : undefined;
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (d && existsSync(join(d, bin))) return join(d, bin);
  }
  return undefined;
}

export function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n')[0] ?? '';
}

export function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The pid QEMU wrote to its `-pidfile`, or undefined when there is none (yet) or it holds no pid. */
export function readPidfile(path: string): number | undefined {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why a QEMU never answered QMP at start, from its spawn error, exit and log tail: VM_IMAGE_INVALID when
 * the log names an image problem, else VM_HYPERVISOR.
 */
export function startFailure(
  id: string,
  cmd: string,
  logPath: string,
  spawnErr: Error | undefined,
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined,
): FormError {
  const log = safeRead(logPath).trim().split('\n').slice(-5).join(' | ');
  const msg = spawnErr
    ? `cannot run ${cmd}: ${spawnErr.message}`
    : `QEMU exited${exited ? ` (code ${exited.code ?? exited.signal})` : ' (no QMP answer)'}: ${log || 'no output'}`;
  const imageProblem = /Could not open|not in qcow2|Image is not|backing|Invalid|qcow2|could not load/i.test(log);
  return new FormError(imageProblem ? 'VM_IMAGE_INVALID' : 'VM_HYPERVISOR', `Cannot start VM ${id}: ${msg}`, {
    details: { log: log.slice(0, 2000) },
  });
}

/** Why a QEMU ended that the driver did not stop itself: guest poweroff, host shutdown, signal, crash (its log's tail) or vanished. */
export function exitInfoOf(
  vm: DriverVm,
  live: {
    pid: number;
    shutdown: { guest: boolean; reason: string } | undefined;
    childExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  },
): ExitInfo {
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
  return info;
}
