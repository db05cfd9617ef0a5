import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FormError } from '@formation/interface';
import { type RunOptions, type RunResult, run } from './exec.ts';

/** PATH inside the image at build time. */
export const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// Runs inside a private mount + PID namespace: the proc, /dev/shm and .deb-cache mounts vanish when it
// exits (nothing is ever left mounted on the host) and so does every process a RUN step started. The
// host's /dev is not bound in: the image's own minimal /dev (null, zero, random, tty...) is used.
const HOST_SCRIPT = `R=$1 D=$2 C=$3; shift 3
mount -t proc proc "$R/proc" && mount -t tmpfs -o size=64m,mode=1777 tmpfs "$R/dev/shm" || { echo "FORM-MOUNT-FAILED" >&2; exit 90; }
if [ -n "$D" ]; then mount --bind "$D" "$R/var/cache/apt/archives" || { echo "FORM-MOUNT-FAILED" >&2; exit 90; }; fi
exec chroot "$R" /usr/bin/env -i PATH=${IMAGE_PATH} HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@" /bin/sh -c "$C"`;

export interface ChrootOptions extends Omit<RunOptions, 'env' | 'cwd'> {
  /** Host directory bound over /var/cache/apt/archives (the shared .deb cache). */
  debCache?: string;
  /** Extra environment, KEY=VALUE. */
  env?: string[];
}

/**
 * Run a shell command inside the image root `root` as REAL root (chroot with private mount + PID
 * namespaces, host network). Only for trusted work: the package layer (Debian packages from the mirror).
 * Anything of the Formfile's author runs in `sandboxRun`.
 */
export function chrootRun(root: string, command: string, opts: ChrootOptions = {}): Promise<RunResult> {
  return run(
    [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--',
      '/bin/sh',
      '-c',
      HOST_SCRIPT,
      'sh',
      root,
      opts.debCache ?? '',
      command,
      ...(opts.env ?? []),
    ],
    { ...opts, env: { PATH: process.env.PATH ?? IMAGE_PATH } },
  );
}

const SANDBOX_PY = fileURLToPath(new URL('./sandbox.py', import.meta.url));

/** Limits and identity of the build sandbox (see README, "Sandbox"). */
export interface SandboxLimits {
  /** First host uid/gid of the sandbox: uid 0..65535 inside are idBase..idBase+65535 outside. */
  idBase: number;
  /** RLIMIT_NPROC of the sandbox's (host) uid. */
  maxProcs: number;
}

export const DEFAULT_SANDBOX: SandboxLimits = { idBase: 1_000_000_000, maxProcs: 4096 };
const ID_COUNT = 65536;

export interface SandboxOptions extends ChrootOptions {
  limits?: SandboxLimits;
  /** Hostname inside the sandbox. */
  hostname?: string;
}

function python(): string {
  return existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/**
 * Run a shell command inside the image root `root` in the build sandbox: root inside a user namespace
 * (an unprivileged uid on the host), the image through an idmapped mount (ownership on disk stays the
 * image's), pivot_root (no host path reachable), new PID/net (lo only)/IPC/UTS/cgroup namespaces. Used
 * for everything that runs code of the Formfile's author, and for every step after the first RUN.
 */
export async function sandboxRun(root: string, command: string, opts: SandboxOptions = {}): Promise<RunResult> {
  const limits = opts.limits ?? DEFAULT_SANDBOX;
  const r = await run(
    [
      python(),
      '-I', // isolated: no PYTHON* variables, no user site (this runs as root)
      SANDBOX_PY,
      root,
      String(limits.idBase),
      String(ID_COUNT),
      String(limits.maxProcs),
      opts.hostname ?? 'formpack-build',
      '--',
      '/usr/bin/env',
      '-i',
      `PATH=${IMAGE_PATH}`,
      'HOME=/root',
      'LANG=C.UTF-8',
      'DEBIAN_FRONTEND=noninteractive',
      ...(opts.env ?? []),
      '/bin/sh',
      '-c',
      command,
    ],
    { ...opts, env: { PATH: process.env.PATH ?? IMAGE_PATH } },
  );
  const failed = r.code === 91 ? /FORM-SANDBOX-FAILED: (.*)/.exec(r.output) : null;
  if (failed) {
    throw new FormError('HOST_UNSUPPORTED', `Cannot start the build sandbox: ${failed[1]}`, {
      hint: 'Builds need Linux >= 5.12 with user namespaces and idmapped mounts (ext4, xfs or btrfs under the data dir), and python3.',
    });
  }
  return r;
}

/** Quote a string for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
