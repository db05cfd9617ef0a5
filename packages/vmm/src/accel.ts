import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { dirname } from 'node:path';

/** Result of the KVM probe: which accelerator to use and why. */
export interface AccelProbe {
  accel: 'kvm' | 'tcg';
  reason: string;
  host: string;
  kernel: string;
  probedAt: string;
}

/**
 * Decide between KVM and TCG (PLATFORM.md §1). Fast path: no usable /dev/kvm ⇒ tcg. Otherwise boot
 * `kernel` under KVM with no root fs: a working KVM reaches the VFS kernel panic within a few seconds
 * (panic=-1 + -no-reboot make QEMU exit); an MSR abort, a hang or a timeout ⇒ tcg. The result is cached
 * in `cacheFile` per host (hostname + host kernel release), so the probe runs once per machine.
 *
 * @example
 * const { accel } = await probeAccel({ kernel: '/boot/vmlinuz-6.1.0-56-cloud-amd64', cacheFile: '/var/tmp/x.json' });
 */
export async function probeAccel(opts: {
  kernel: string;
  cacheFile?: string | undefined;
  qemu?: string;
  timeoutMs?: number;
}): Promise<AccelProbe> {
  const host = `${hostname()} ${release()}`;
  if (opts.cacheFile && existsSync(opts.cacheFile)) {
    try {
      const cached = JSON.parse(readFileSync(opts.cacheFile, 'utf8')) as AccelProbe;
      if (cached.host === host && cached.kernel === opts.kernel) return cached;
    } catch {
      // re-probe
    }
  }
  const result = await doProbe(host, opts.kernel, opts.qemu ?? 'qemu-system-x86_64', opts.timeoutMs ?? 6000);
  if (opts.cacheFile) {
    mkdirSync(dirname(opts.cacheFile), { recursive: true });
    const tmp = `${opts.cacheFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(result));
    renameSync(tmp, opts.cacheFile);
  }
  return result;
}

async function doProbe(host: string, kernel: string, qemu: string, timeoutMs: number): Promise<AccelProbe> {
  const base = { host, kernel, probedAt: new Date().toISOString() };
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { ...base, accel: 'tcg', reason: '/dev/kvm is missing or not accessible' };
  }
  const tries: string[] = [];
  for (const cpu of ['host', 'host,-arch-capabilities']) {
    const out = await run(
      qemu,
      [
        '-accel',
        'kvm',
        '-cpu',
        cpu,
        '-M',
        'microvm',
        '-m',
        '128',
        '-nodefaults',
        '-nographic',
        '-no-user-config',
        '-serial',
        'stdio',
        '-kernel',
        kernel,
        '-append',
        'console=ttyS0 panic=-1',
        '-no-reboot',
      ],
      timeoutMs,
    );
    if (out.text.includes('Kernel panic')) return { ...base, accel: 'kvm', reason: `KVM boots a kernel (-cpu ${cpu})` };
    const firstErr = out.text.split('\n').find((l) => /error|assert/i.test(l));
    tries.push(
      `-cpu ${cpu}: ${out.timedOut ? `no kernel panic within ${timeoutMs} ms (hang)` : (firstErr ?? `exit ${out.code}`)}`,
    );
  }
  return { ...base, accel: 'tcg', reason: `/dev/kvm exists but KVM does not boot a guest here (${tries.join('; ')})` };
}

function run(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ text: string; code: number | null; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; code?: unknown }) | null;
        resolve({
          text: `${stdout}\n${stderr}`,
          code: typeof e?.code === 'number' ? e.code : e ? null : 0,
          timedOut: Boolean(e?.killed),
        });
      },
    );
    child.stdin?.end();
  });
}
