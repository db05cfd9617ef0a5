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

/** Run a shell command inside the image root `root` (as root, with /proc and /dev available). */
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

/** Quote a string for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
