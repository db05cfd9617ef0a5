// Rolling updates keep each replica's data disk (issue 20): the old VM's data disk (the encrypted
// `/data`, LUKS under the owner's key) is moved aside after its VM stopped cleanly and before the VM is
// destroyed, and moved into the new VM (created without starting) before its first start. Same node,
// same file (a rename): nothing is copied, nothing leaves the node. Where a VM's data disk lives is the
// VMM's (`VmManager.takeDataDisk` / `putDataDisk`); the node only keeps it in between.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { VmManager } from '@formation/vmm';

/** What the carry needs of the VMM. */
export type DataDisks = Pick<VmManager, 'takeDataDisk' | 'putDataDisk'>;

/** Where a replica's data disk waits between its old VM and its new one. */
export function carryPath(dataDir: string, instanceId: string): string {
  if (!/^[0-9a-f]{32}$/.test(instanceId)) throw new Error(`not an instance id: ${instanceId}`);
  return join(dataDir, 'carry', `${instanceId}.data.qcow2`);
}

/** Move the (stopped) VM's data disk aside for the instance's next VM. Resolves whether there was one. */
export function keepDataDisk(vmm: DataDisks, dataDir: string, vmId: string, instanceId: string): Promise<boolean> {
  const to = carryPath(dataDir, instanceId);
  mkdirSync(join(dataDir, 'carry'), { recursive: true, mode: 0o700 });
  return vmm.takeDataDisk(vmId, to);
}

/** Whether a kept data disk waits for this instance's next VM. */
export function hasKeptDataDisk(dataDir: string | undefined, instanceId: string): boolean {
  return dataDir !== undefined && existsSync(carryPath(dataDir, instanceId));
}

/**
 * Put the kept data disk in place of the new (not yet started) VM's empty one. A VM without a data
 * disk gets none (the kept one is dropped: nothing would attach it).
 */
export async function restoreDataDisk(
  vmm: DataDisks,
  dataDir: string,
  vmId: string,
  instanceId: string,
): Promise<boolean> {
  const from = carryPath(dataDir, instanceId);
  if (!existsSync(from)) return false;
  return vmm.putDataDisk(vmId, from);
}
