import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';

const execFileP = promisify(execFile);

/** Disk formats QEMU may open for a VM. */
export type DiskFormat = 'qcow2' | 'raw' | 'vmdk';
export const DISK_FORMATS: readonly DiskFormat[] = ['qcow2', 'raw', 'vmdk'];

export interface CheckImageOptions {
  /** The format the image will be opened as (given to qemu-img with -f: never probed). */
  format: DiskFormat;
  /**
   * The one backing file allowed: the overlay the VMM creates on top of a base it verified itself
   * (that exact file and format). `'replaced'`: the caller swaps the backing file without opening it
   * (`qemu-img rebase -u`), as for a revision from a peer. Absent: no backing file at all.
   */
  backing?: { file: string; format: DiskFormat } | 'replaced' | undefined;
}

/** What `checkImage` found in an image it accepts. */
export interface ImageCheck {
  format: DiskFormat;
  virtualSize: number;
  actualSize: number;
  /** Backing file as recorded in the image (only when `backing` allowed one). */
  backing?: string | undefined;
}

/** The parts of `qemu-img info --output=json` that decide whether an image reaches other files. */
export interface QemuImgInfo {
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: {
    type: string;
    data?: {
      'data-file'?: string;
      'data-file-raw'?: boolean;
      extents?: Array<{ filename: string; format?: string }>;
    };
  };
}

function unsafe(path: string, why: string): FormError {
  return new FormError('VM_IMAGE_UNSAFE', `Cannot use image ${path}: ${why}`, {
    hint: 'Images from outside (peers, uploads, the images dir) must be self-contained: no backing file, no external data file, no extents in other files. Flatten it with `qemu-img convert -O qcow2 <in> <out>`.',
  });
}

/**
 * Decide from `qemu-img info` whether QEMU may open the image: the expected format, no backing file
 * (except exactly the allowed one), no qcow2 external data file, no VMDK extent outside the file
 * itself. Each of those would let a guest read or write a host file (`-b /dev/sda`). Pure.
 *
 * @example
 * evaluateImageInfo('/x.qcow2', { format: 'qcow2', 'virtual-size': 1 << 20, 'backing-filename': '/dev/sda' }, { format: 'qcow2' })
 * // throws VM_IMAGE_UNSAFE "Cannot use image /x.qcow2: it has a backing file (/dev/sda) …"
 */
export function evaluateImageInfo(path: string, info: QemuImgInfo, opts: CheckImageOptions): ImageCheck {
  if (info.format !== opts.format) {
    throw new FormError('VM_IMAGE_INVALID', `Cannot use image ${path}: it is ${info.format}, expected ${opts.format}`);
  }
  const backing = info['full-backing-filename'] ?? info['backing-filename'];
  if (backing !== undefined) {
    const allowed = opts.backing;
    if (allowed === undefined) {
      throw unsafe(path, `it has a backing file (${backing}), and only self-contained images are accepted`);
    }
    if (allowed !== 'replaced') {
      if (backing !== allowed.file || (info['backing-filename-format'] ?? '') !== allowed.format) {
        throw unsafe(
          path,
          `its backing file is ${backing} (${info['backing-filename-format'] ?? 'format not recorded'}), not the VM's base ${allowed.file} (${allowed.format})`,
        );
      }
    }
  }
  const data = info['format-specific']?.data;
  if (data?.['data-file'] !== undefined) {
    throw unsafe(path, `it keeps its data in another file (data-file ${data['data-file']})`);
  }
  if (info.format === 'vmdk') {
    const self = realOrResolved(path);
    for (const e of data?.extents ?? []) {
      const file = isAbsolute(e.filename) ? e.filename : resolve(dirname(path), e.filename);
      if (realOrResolved(file) !== self) throw unsafe(path, `it has an extent in another file (${e.filename})`);
    }
  }
  const size = info['virtual-size'];
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new FormError(
      'VM_IMAGE_INVALID',
      size === 0
        ? `Cannot use image ${path}: it is empty (virtual size 0)`
        : `Cannot use image ${path}: virtual size ${size} is not a disk size`,
    );
  }
  return {
    format: opts.format,
    virtualSize: size,
    actualSize: info['actual-size'] ?? 0,
    ...(backing !== undefined ? { backing } : {}),
  };
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

/**
 * Check an image before QEMU (running as root) opens it: `qemu-img info -f <format>` (the format is
 * never probed, and the backing chain is NOT followed: `--backing-chain` would itself open whatever a
 * hostile image names, e.g. a network `json:` target), then `evaluateImageInfo`. A qcow2 also passes
 * `qemu-img check` (corrupt tables). Throws VM_IMAGE_UNSAFE or VM_IMAGE_INVALID.
 *
 * @example
 * await checkImage(fetchedDisk, { format: 'qcow2' });
 */
export async function checkImage(path: string, opts: CheckImageOptions): Promise<ImageCheck> {
  if (!isAbsolute(path) || [...path].some((c) => c < ' ' || c === ',')) {
    throw new FormError(
      'VM_BAD_ARGUMENT',
      `Cannot use image ${JSON.stringify(path)}: give an absolute path without commas`,
    );
  }
  if (!DISK_FORMATS.includes(opts.format)) {
    throw new FormError(
      'VM_IMAGE_INVALID',
      `Cannot use image ${path}: format ${String(opts.format)} is not one of ${DISK_FORMATS.join(', ')}`,
    );
  }
  let info: QemuImgInfo;
  try {
    const { stdout } = await execFileP('qemu-img', ['info', '-U', '-f', opts.format, '--output=json', path], {
      timeout: 30_000,
      maxBuffer: 4 * 2 ** 20,
    });
    info = JSON.parse(stdout) as QemuImgInfo;
  } catch (err) {
    throw new FormError(
      'VM_IMAGE_INVALID',
      `Cannot use image ${path}: qemu-img cannot read it as ${opts.format} (${stderrOf(err)})`,
      {
        cause: err,
      },
    );
  }
  const r = evaluateImageInfo(path, info, opts);
  // qemu-img check catches corrupt headers/tables that info alone accepts (-U: the image may be in
  // use). It opens the backing file, so not while that is a name from outside ('replaced').
  if (opts.format === 'qcow2' && !(r.backing !== undefined && opts.backing === 'replaced')) {
    await execFileP('qemu-img', ['check', '-U', '-q', '-f', 'qcow2', path], { timeout: 120_000 }).catch(
      (err: unknown) => {
        throw new FormError('VM_IMAGE_INVALID', `Cannot use image ${path}: it is corrupt (${stderrOf(err)})`, {
          cause: err,
        });
      },
    );
  }
  return r;
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: string; message?: string };
  return (e.stderr?.trim() || e.message || String(err)).split('\n')[0] ?? '';
}
