import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { NonceCache } from '@formation/identity';
import { type ApiServer, createApiServer, type Logger } from '@formation/service';
import { registerVmmRoutes, type VmmAccess } from './api.ts';
import type { VmmConfig } from './config.ts';
import type { HypervisorDriver } from './driver.ts';
import { hostKernel } from './images.ts';
import { VmManager } from './manager.ts';
import { VmNetwork } from './network.ts';
import { QemuDriver } from './qemu-driver.ts';
import { VmStore } from './store.ts';

export interface VmmService {
  app: ApiServer;
  manager: VmManager;
  driver: HypervisorDriver;
  /** Stop background work. `stopVms: true` also stops every VM and removes the network it created. */
  close(opts?: { stopVms?: boolean }): Promise<void>;
}

/**
 * Build the VMM: QEMU driver, VM manager (records re-attached), REST routes on a Fastify app. The
 * caller listens (`app.listen({ port: config.apiPort })`) or mounts the routes' app in the node daemon.
 *
 * @example
 * const vmm = await createVmmService({ config: loadVmmConfig(), logger: createLogger() });
 * await vmm.app.listen({ port: 3002, host: '127.0.0.1' });
 */
export async function createVmmService(opts: {
  config: VmmConfig;
  logger: Logger;
  driver?: HypervisorDriver;
  nonces?: NonceCache;
  /** Who reads what: the node's key sees every VM; others only their own (see `VmmAccess`). */
  access?: VmmAccess;
  /** Extra routes mounted on the VMM API before it is sealed (e.g. `registerAttestRoutes` of @formation/attest). */
  routes?: (app: ApiServer, manager: VmManager) => void;
}): Promise<VmmService> {
  const { config, logger } = opts;
  mkdirSync(config.vmDir, { recursive: true });
  mkdirSync(config.cacheDir, { recursive: true });
  const driver =
    opts.driver ??
    new QemuDriver({
      logger,
      accel: config.accel,
      probeKernel: config.kernelPath ?? hostKernel(),
      probeCacheFile: join(config.cacheDir, 'accel-probe.json'),
      machine: config.machine,
      sandbox: config.sandbox,
      cgroupLimits: config.cgroupLimits,
    });
  const network = new VmNetwork(config.network, logger);
  const manager = new VmManager({
    driver,
    store: new VmStore(config.vmDir),
    network,
    logger,
    formpacksDir: config.formpacksDir,
    imagesDir: config.imagesDir,
    cacheDir: config.cacheDir,
    kernelPath: config.kernelPath,
    initramfsPath: config.initramfsPath,
    dataDiskMiB: config.dataDiskMiB,
    capacity: config.capacity,
    stopTimeoutMs: config.stopTimeoutMs,
    healthIntervalMs: config.healthIntervalMs,
    restartPolicy: config.restartPolicy,
    maxRestarts: config.maxRestarts,
  });
  await manager.init();
  const app = await createApiServer({
    name: 'vmm',
    logger,
    description: 'Formation VMM: VM lifecycle over QEMU (KVM or TCG)',
  });
  registerVmmRoutes(app, manager, opts.nonces ?? new NonceCache(), opts.access);
  opts.routes?.(app, manager);
  await app.ready();
  return {
    app,
    manager,
    driver,
    async close(o = {}) {
      await app.close();
      await manager.close(o);
    },
  };
}
