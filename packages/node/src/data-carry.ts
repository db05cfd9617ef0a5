// Rolling updates keep each replica's data disk (issue 20): the old VM's `data.qcow2` (the encrypted
// `/data`, LUKS under the owner's key) is moved aside after its VM stopped cleanly and before the VM is
// destroyed, and moved into the new VM (created without starting) before its first start. Same node,
// same file (a rename): nothing is copied, nothing leaves the node.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Where a replica's data disk waits between its old VM and its new one. */
export function carryPath(dataDir: string, instanceId: string): string {
  if (!/^[0-9a-f]{32}$/.test(instanceId)) throw new Error(`not an instance id: ${instanceId}`);
  return join(dataDir, 'carry', `${instanceId}.data.qcow2`);
}

const dataDiskOf = (dataDir: string, vmId: string): string => join(dataDir, 'vms', vmId, 'qemu', 'data.qcow2');

/** Move the (stopped) VM's data disk aside for the instance's next VM. Returns whether there was one. */
export function keepDataDisk(dataDir: string, vmId: string, instanceId: string): boolean {
  const from = dataDiskOf(dataDir, vmId);
  if (!existsSync(from)) return false;
  const to = carryPath(dataDir, instanceId);
  mkdirSync(join(dataDir, 'carry'), { recursive: true, mode: 0o700 });
  renameSync(from, to);
  return true;
}

/** Whether a kept data disk waits for this instance's next VM. */
export function hasKeptDataDisk(dataDir: string | undefined, instanceId: string): boolean {
  return dataDir !== undefined && existsSync(carryPath(dataDir, instanceId));
}

/**
 * Put the kept data disk in place of the new (not yet started) VM's empty one. A VM without a data
 * disk gets none (the kept one is dropped: nothing would attach it).
 */
export function restoreDataDisk(dataDir: string, vmId: string, instanceId: string): boolean {
  const from = carryPath(dataDir, instanceId);
  if (!existsSync(from)) return false;
  const to = dataDiskOf(dataDir, vmId);
  if (!existsSync(to)) {
    rmSync(from, { force: true });
    return false;
  }
  renameSync(from, to);
  return true;
}
