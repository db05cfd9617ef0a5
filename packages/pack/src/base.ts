import { createHash, randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import { chrootRun } from './chroot.ts';
import { looksLikeDiskFull, run, runOk } from './exec.ts';
import { withLock } from './lock.ts';

/**
 * Packages every image has: ssh server, guest agent, network tools, sudo, and what the encrypted data
 * disk needs (cryptsetup + mkfs.ext4; see `/usr/sbin/form-disk` in @formation/guest).
 */
export const BASE_PACKAGES = [
  'openssh-server',
  'qemu-guest-agent',
  'iproute2',
  'iputils-ping',
  'sudo',
  'procps',
  'ca-certificates',
  'netbase',
  'usr-is-merged',
  'cryptsetup-bin',
  'e2fsprogs',
] as const;

// usrmerge (and with it ~50 MB of perl) is only needed while /usr is being merged; a merged image
// works with usr-is-merged alone.
const PRUNE = `chroot "$1" sh -c 'apt-get purge -y usrmerge perl $(dpkg-query -W -f "\\\${Package}\\n" "libperl5*" "perl-modules-*" "lib*-perl" 2>/dev/null) || true'`;

const DPKG_EXCLUDES = ['/usr/share/doc/*', '/usr/share/man/*', '/usr/share/locale/*', '/usr/share/info/*'];

export interface BaseOptions {
  cacheDir: string;
  suite: string;
  /** Debian mirror URL; empty = mmdebstrap's default (deb.debian.org). */
  mirror: string;
  onLine?: (line: string) => void;
  signal?: AbortSignal;
}

export interface CachePaths {
  debs: string;
  locks: string;
  tmp: string;
}

export function cachePaths(cacheDir: string): CachePaths {
  return { debs: join(cacheDir, 'debs'), locks: join(cacheDir, 'locks'), tmp: join(cacheDir, 'tmp') };
}

/** A temp dir inside the cache (same filesystem, so the final rename is atomic). */
export function cacheTemp(cacheDir: string, tag: string): string {
  const dir = join(cachePaths(cacheDir).tmp, `${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Remove temp dirs left by processes that are gone (interrupted builds). */
export function sweepTemps(dir: string, alive: (pid: number) => boolean): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const m = /-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (m && !alive(Number(m[1]))) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

export function baseKey(o: Pick<BaseOptions, 'suite' | 'mirror'>): string {
  return createHash('sha256')
    .update(`base-v3\n${o.suite}\n${o.mirror}\n${BASE_PACKAGES.join(',')}\n${DPKG_EXCLUDES.join(',')}`)
    .digest('hex')
    .slice(0, 16);
}

export interface Base {
  key: string;
  rootfs: string;
  /** Package names (and virtual names) the base's apt lists know. */
  available: Set<string>;
}

/** The cached base rootfs (mmdebstrap minbase + BASE_PACKAGES), built once under a lock. */
export async function ensureBase(o: BaseOptions): Promise<Base> {
  const key = baseKey(o);
  const dir = join(o.cacheDir, `base-${key}`);
  const cp = cachePaths(o.cacheDir);
  if (!existsSync(join(dir, 'packages.txt'))) {
    await withLock(join(cp.locks, `base-${key}.lock`), async () => {
      if (existsSync(join(dir, 'packages.txt'))) return;
      mkdirSync(cp.debs, { recursive: true });
      const tmp = cacheTemp(o.cacheDir, `base-${key}`);
      try {
        const argv = [
          'mmdebstrap',
          '--variant=minbase',
          `--include=${BASE_PACKAGES.join(',')}`,
          '--skip=essential/unlink',
          '--skip=cleanup/apt/lists',
          ...DPKG_EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
          `--setup-hook=mkdir -p "$1"/var/cache/apt/archives/`,
          `--setup-hook=sync-in ${cp.debs} /var/cache/apt/archives/`,
          `--customize-hook=${PRUNE}`,
          `--customize-hook=sync-out /var/cache/apt/archives ${cp.debs}`,
          o.suite,
          join(tmp, 'rootfs'),
          ...(o.mirror ? [o.mirror] : []),
        ];
        const r = await run(argv, { onLine: o.onLine, signal: o.signal });
        if (r.code !== 0) {
          const tail = r.output.trim().split('\n').slice(-15).join('\n');
          if (looksLikeDiskFull(r.output))
            throw new FormError('DISK_FULL', `Cannot build the base image: no space left on the host disk\n${tail}`);
          throw new FormError(
            'INTERNAL',
            `Cannot build the base image: mmdebstrap exited with code ${r.code}\n${tail}`,
            {
              hint: 'Check that the Debian mirror is reachable (apt proxy settings of the host apply).',
            },
          );
        }
        const names = packageIndex(join(tmp, 'rootfs'));
        writeFileSync(join(tmp, 'packages.txt'), [...names].join('\n'));
        renameSync(tmp, dir);
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });
  }
  const available = new Set(readFileSync(join(dir, 'packages.txt'), 'utf8').split('\n'));
  return { key, rootfs: join(dir, 'rootfs'), available };
}

/** Package names and `Provides:` names from a rootfs's apt lists. */
export function packageIndex(rootfs: string): Set<string> {
  const lists = join(rootfs, 'var/lib/apt/lists');
  const names = new Set<string>();
  for (const f of readdirSync(lists)) {
    if (!f.endsWith('_Packages')) continue;
    const text = readFileSync(join(lists, f), 'utf8');
    for (const m of text.matchAll(/^(Package|Provides): (.+)$/gm)) {
      for (const part of (m[2] ?? '').split(',')) {
        const name = part.trim().split(/[\s(:]/)[0];
        if (name) names.add(name);
      }
    }
  }
  return names;
}

const PKG_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** Refuse INSTALL names that are malformed or unknown to Debian, naming each one (before any slow work). */
export function checkPackages(wanted: string[], available: Set<string>, suite: string): void {
  const bad = wanted.filter((p) => !PKG_NAME.test(p));
  if (bad.length) {
    throw new FormError('PACK_UNKNOWN_PACKAGE', `Cannot INSTALL ${bad.join(', ')}: not a valid Debian package name`);
  }
  const unknown = wanted.filter((p) => !available.has(p));
  if (unknown.length) {
    throw new FormError(
      'PACK_UNKNOWN_PACKAGE',
      `Cannot INSTALL ${unknown.join(', ')}: no such package in Debian ${suite}`,
      {
        hint: 'Check the name at https://packages.debian.org (the image is Debian, not Ubuntu or Alpine).',
        details: { unknown },
      },
    );
  }
}

/** Key of the package layer (base + INSTALL set). */
export function layerKey(baseKeyValue: string, packages: string[]): string {
  return createHash('sha256')
    .update(`layer-v1\n${baseKeyValue}\n${[...new Set(packages)].sort().join('\n')}`)
    .digest('hex')
    .slice(0, 24);
}

/**
 * The cached rootfs with `packages` apt-installed on top of the base; the base itself when there are
 * none. Built once per package set (under a lock), with the shared .deb cache.
 */
export async function ensureLayer(o: BaseOptions, base: Base, packages: string[]): Promise<string> {
  if (packages.length === 0) return base.rootfs;
  const key = layerKey(base.key, packages);
  const cp = cachePaths(o.cacheDir);
  const dir = join(o.cacheDir, 'layers', key);
  if (existsSync(join(dir, 'done'))) return join(dir, 'rootfs');
  await withLock(join(cp.locks, `layer-${key}.lock`), async () => {
    if (existsSync(join(dir, 'done'))) return;
    const tmp = cacheTemp(o.cacheDir, `layer-${key}`);
    try {
      await runOk(['cp', '-a', '--reflink=auto', base.rootfs, join(tmp, 'rootfs')], 'copy the base image', {
        signal: o.signal,
      });
      const root = join(tmp, 'rootfs');
      copyFileSync('/etc/resolv.conf', join(root, 'etc/resolv.conf'));
      writeFileSync(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
      mkdirSync(cp.debs, { recursive: true });
      const r = await chrootRun(
        root,
        `apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 ${packages.join(' ')}`,
        { debCache: cp.debs, onLine: o.onLine, signal: o.signal },
      );
      if (r.code !== 0) {
        const tail = r.output.trim().split('\n').slice(-15).join('\n');
        if (looksLikeDiskFull(r.output))
          throw new FormError(
            'DISK_FULL',
            `Cannot install ${packages.join(' ')}: no space left on the host disk\n${tail}`,
          );
        throw new FormError(
          'PACK_BUILD_FAILED',
          `Cannot INSTALL ${packages.join(' ')}: apt-get exited with code ${r.code}\n${tail}`,
          { details: { exitCode: r.code } },
        );
      }
      rmSync(join(root, 'usr/sbin/policy-rc.d'), { force: true });
      mkdirSync(join(o.cacheDir, 'layers'), { recursive: true });
      writeFileSync(join(tmp, 'done'), packages.join('\n'));
      renameSync(tmp, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
  return join(dir, 'rootfs');
}
