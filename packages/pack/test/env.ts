import { existsSync } from 'node:fs';
import { hasGuestKernel, missingPrograms } from '@formation/interface';
import { requireOrSkip } from '@formation/interface/testing';

/** The base/layer cache shared by every test run (the base takes ~35 s to build the first time). */
export const CACHE_DIR = process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache';

const TOOLS = [
  'python3',
  'mmdebstrap',
  'mkfs.ext4',
  'debugfs',
  'qemu-img',
  'unshare',
  'chroot',
  'openssl',
  'cpio',
  'modprobe',
];

/**
 * Why real builds cannot run here, or false when they can. With FORM_REQUIRE_INTEGRATION=1 a missing
 * prerequisite is a failure, not a skip.
 */
export function buildPrereqMissing(extra: string[] = []): string | false {
  return requireOrSkip('real Formpack builds', { check: () => missingForBuilds(extra) });
}

function missingForBuilds(extra: string[]): string | false {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  missing.push(...missingPrograms([...TOOLS, ...extra]));
  if (!existsSync('/bin/busybox')) missing.push('busybox-static');
  if (!hasGuestKernel()) missing.push('linux-image-cloud-amd64');
  return missing.length > 0 && `needs ${missing.join(', ')} (run scripts/setup.sh as root)`;
}
