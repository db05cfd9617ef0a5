import { createReadStream, createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FormError } from '@formation/interface';
import type { DriverVm, DriverVmSpec } from './driver.ts';
import { checkImage, type DiskFormat } from './image-check.ts';
import { validateSpec } from './qemu-argv.ts';
import { execFileP, stderrOf } from './qemu-process.ts';

/** Where the files of a VM live in its directory. */
export function qemuVmPaths(spec: DriverVmSpec): DriverVm['paths'] {
  return {
    disk: join(spec.dir, 'disk.qcow2'),
    qmp: join(spec.dir, 'qmp.sock'),
    qga: join(spec.dir, 'qga.sock'),
    serial: join(spec.dir, 'serial.log'),
    pidfile: join(spec.dir, 'qemu.pid'),
    ...(spec.dataDiskMiB ? { data: join(spec.dir, 'data.qcow2') } : {}),
  };
}

/**
 * Create the VM's directory and disks: a qcow2 overlay over the (checked, self-contained) base image,
 * grown to `diskGiB`, and the empty data disk when one is asked for.
 */
export async function createVmDisks(spec: DriverVmSpec): Promise<DriverVm> {
  await mkdir(spec.dir, { recursive: true });
  const paths = qemuVmPaths(spec);
  if (!existsSync(spec.baseDisk)) {
    throw new FormError('VM_IMAGE_INVALID', `Cannot create VM ${spec.id}: disk image ${spec.baseDisk} does not exist`);
  }
  validateSpec(spec, 'create');
  // The base comes from outside (a peer's Formpack, the images dir, an API caller): self-contained only.
  const info = await checkImage(resolve(spec.baseDisk), { format: spec.baseDiskFormat }).catch((err: unknown) => {
    if (err instanceof FormError) {
      throw new FormError(err.code, `Cannot create VM ${spec.id}: ${err.message.replace(/^Cannot /, '')}`, {
        hint: err.hint,
        cause: err,
      });
    }
    throw err;
  });
  if (info.virtualSize < 2 ** 20) {
    throw new FormError(
      'VM_IMAGE_INVALID',
      `Cannot create VM ${spec.id}: ${spec.baseDisk} is empty (${info.virtualSize} bytes)`,
    );
  }
  const want = spec.diskGiB * 2 ** 30;
  // An absolute backing name: QEMU may open the overlay as /dev/fdset/N, relative to which nothing resolves.
  const args = ['create', '-q', '-f', 'qcow2', '-b', resolve(spec.baseDisk), '-F', spec.baseDiskFormat, paths.disk];
  if (want > info.virtualSize) args.push(String(want));
  try {
    await execFileP('qemu-img', args);
  } catch (err) {
    throw new FormError('VM_IMAGE_INVALID', `Cannot create the disk of VM ${spec.id}: ${stderrOf(err)}`, {
      cause: err,
    });
  }
  if (paths.data) {
    try {
      await execFileP('qemu-img', ['create', '-q', '-f', 'qcow2', paths.data, `${spec.dataDiskMiB}M`]);
    } catch (err) {
      throw new FormError('VM_IMAGE_INVALID', `Cannot create the data disk of VM ${spec.id}: ${stderrOf(err)}`, {
        cause: err,
      });
    }
  }
  return { spec, paths };
}

/**
 * Make a stopped VM's overlay `disk` the qcow2 `image` (a revision another VM committed): the image is
 * checked (plain qcow2; its backing name is replaced, never opened), copied beside the disk, re-based
 * onto the base the disk has now (the image names the committing node's path), checked again and
 * renamed over the disk. Whatever fails, the disk is left as it was.
 */
export async function replaceOverlay(disk: string, image: string): Promise<void> {
  await checkImage(resolve(image), { format: 'qcow2', backing: 'replaced' });
  const { stdout } = await execFileP('qemu-img', ['info', '-U', '-f', 'qcow2', '--output=json', disk]);
  const info = JSON.parse(stdout) as {
    'full-backing-filename'?: string;
    'backing-filename'?: string;
    'backing-filename-format'?: string;
  };
  const backing = info['full-backing-filename'] ?? info['backing-filename'];
  const fmt = info['backing-filename-format'] ?? 'qcow2';
  const tmp = `${disk}.rev`;
  await pipeline(createReadStream(image), createWriteStream(tmp));
  if (backing) await execFileP('qemu-img', ['rebase', '-u', '-f', 'qcow2', '-b', backing, '-F', fmt, tmp]);
  // Now backed by this VM's base: exactly that, or the overlay is not used (checked again at start).
  await checkImage(resolve(tmp), {
    format: 'qcow2',
    ...(backing ? { backing: { file: backing, format: fmt as DiskFormat } } : {}),
  }).catch((err: unknown) => {
    rmSync(tmp, { force: true });
    throw err;
  });
  renameSync(tmp, disk);
}
