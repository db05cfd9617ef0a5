import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INITRAMFS_MODULES, initramfsInit } from '@formation/guest';
import { FormError } from '@formation/interface';
import { cacheTemp } from './base.ts';
import { runOk } from './exec.ts';
import { withLock } from './lock.ts';

export interface Kernel {
  path: string;
  version: string;
}

/** Compare Debian-ish kernel versions like 6.1.0-56-cloud-amd64 numerically. */
function versionCompare(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  const pb = b.split(/[.-]/).map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return 0;
}

/** The host's newest /boot/vmlinuz-*-cloud-amd64 (or the configured path). */
export function findKernel(configured?: string): Kernel {
  if (configured) {
    if (!existsSync(configured))
      throw new FormError('HOST_UNSUPPORTED', `Cannot use kernel ${configured}: no such file`);
    const version = configured.replace(/^.*vmlinuz-/, '');
    return { path: configured, version };
  }
  const found = existsSync('/boot')
    ? readdirSync('/boot')
        .filter((f) => /^vmlinuz-.+-cloud-amd64$/.test(f))
        .map((f) => f.slice('vmlinuz-'.length))
        .sort(versionCompare)
    : [];
  const version = found.at(-1);
  if (!version) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      'Cannot build a Formpack: no /boot/vmlinuz-*-cloud-amd64 kernel on this host',
      {
        hint: 'Install it: apt-get install linux-image-cloud-amd64 (scripts/setup.sh does).',
      },
    );
  }
  return { path: `/boot/vmlinuz-${version}`, version };
}

// Resolves module dependencies in load order, copies them in, writes the /init script, packs newc+gzip.
const MK_INITRAMFS = `set -eu
V=$1 D=$2 OUT=$3; shift 3
mkdir -p "$D/bin" "$D/dev" "$D/proc" "$D/sys" "$D/newroot" "$D/lib/modules"
cp /bin/busybox "$D/bin/busybox"
: > "$D/modules.list"
for m in "$@"; do modprobe -S "$V" --show-depends "$m" | awk '$1=="insmod"{print $2}'; done |
  awk '!seen[$0]++' | while read -r f; do
    b=$(basename "$f"); case "$b" in *.ko.xz) xz -dc "$f" > "$D/lib/modules/\${b%.xz}"; b=\${b%.xz};; *) cp "$f" "$D/lib/modules/$b";; esac
    echo "$b" >> "$D/modules.list"; done
chmod 755 "$D/init"
(cd "$D" && find . | sort | cpio -o -H newc --quiet -R 0:0 | gzip -9n) > "$OUT"`;

/** The initramfs for `kernel`, cached per kernel version and init script. */
export async function ensureInitramfs(cacheDir: string, kernel: Kernel): Promise<string> {
  const script = initramfsInit();
  const { createHash } = await import('node:crypto');
  const tag = createHash('sha256').update(script).update(INITRAMFS_MODULES.join(',')).digest('hex').slice(0, 12);
  const dir = join(cacheDir, 'initramfs');
  const out = join(dir, `${kernel.version}-${tag}.img`);
  if (existsSync(out)) return out;
  if (!existsSync('/bin/busybox')) {
    throw new FormError('HOST_UNSUPPORTED', 'Cannot build the initramfs: /bin/busybox is missing', {
      hint: 'apt-get install busybox-static',
    });
  }
  await withLock(join(cacheDir, 'locks', `initramfs-${kernel.version}.lock`), async () => {
    if (existsSync(out)) return;
    const tmp = cacheTemp(cacheDir, 'initramfs');
    try {
      mkdirSync(join(tmp, 'root'), { recursive: true });
      writeFileSync(join(tmp, 'root', 'init'), script, { mode: 0o755 });
      await runOk(
        [
          'sh',
          '-c',
          MK_INITRAMFS,
          'sh',
          kernel.version,
          join(tmp, 'root'),
          join(tmp, 'initramfs.img'),
          ...INITRAMFS_MODULES,
        ],
        'build the initramfs',
      );
      mkdirSync(dir, { recursive: true });
      renameSync(join(tmp, 'initramfs.img'), out);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
  return out;
}
