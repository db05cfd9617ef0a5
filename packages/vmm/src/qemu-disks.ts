import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FormError } from '@formation/interface';
import type { DriverVm, DriverVmSpec } from './driver.ts';
import { checkImage } from './image-check.ts';
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
