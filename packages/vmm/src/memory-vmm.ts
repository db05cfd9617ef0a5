// A VM manager on the memory driver (no QEMU, no root) for tests, the VMM's and the node's
// (`import { memoryVmManager } from '@formation/vmm/memory'`): its VM records under `dir/vms`,
// Formpacks in `formpacksDir`, capacity 4 vCPU / 4 GiB, no health checks.
import type { Logger } from '@formation/service';
import { loadVmmConfig } from './config.ts';
import { VmManager } from './manager.ts';
import { MemoryDriver } from './memory-driver.ts';
import { VmNetwork } from './network.ts';
import { VmStore } from './store.ts';

/** An initialised VmManager over a fresh MemoryDriver (images and cache both in `cacheDir`). */
export async function memoryVmManager(
  dir: string,
  formpacksDir: string,
  cacheDir: string,
  logger: Logger,
): Promise<VmManager> {
  const config = loadVmmConfig({}, { vmDir: `${dir}/vms`, imagesDir: cacheDir, formpacksDir, cacheDir });
  const vmm = new VmManager({
    driver: new MemoryDriver(),
    store: new VmStore(config.vmDir),
    network: new VmNetwork(config.network, logger),
    logger,
    formpacksDir: config.formpacksDir,
    imagesDir: config.imagesDir,
    cacheDir: config.cacheDir,
    capacity: { vcpu: 4, memMiB: 4096, vcpuOvercommit: 4, reserveMemMiB: 0 },
    healthIntervalMs: 0,
    stopTimeoutMs: 2000,
  });
  await vmm.init();
  return vmm;
}
