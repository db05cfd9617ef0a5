import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { NonceCache } from '@formation/identity';
import { type ApiServer, createApiServer, type Logger } from '@formation/service';
import { registerVmmRoutes, type VmmAccess } from './api.ts';
import type { VmmConfig } from './config.ts';
import { type DnsRecords, parseUpstreams } from './dns-forwarder.ts';
import type { HypervisorDriver } from './driver.ts';
import { hostKernel } from './images.ts';
import { LogCollector } from './log-collector.ts';
import { LogStore } from './log-store.ts';
import type { VmLogs } from './logs-api.ts';
import { VmManager } from './manager.ts';
import { VmNetwork } from './network.ts';
import { QemuDriver } from './qemu-driver.ts';
import { VmStore } from './store.ts';

export interface VmmService {
  app: ApiServer;
  manager: VmManager;
  driver: HypervisorDriver;
  /** Guest logs collected on this node (null when turned off). */
  logs: VmLogs | null;
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
  /** Guests' DNS answers `<name>.<domain>` from these records (the node's formnet names). */
  dns?: { domain: string; records: DnsRecords };
  /** Guest log collection (default on: `<vmDir>/.logs`, read every second, 2 × 4 MiB per VM); false = off. */
  logs?: { dir?: string; pollMs?: number; maxFileBytes?: number } | false;
  /** Decides a wake on connection of a suspended VM (the node's planner); default: resume it. */
  onWake?: (id: string) => Promise<void>;
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
  const network = new VmNetwork(config.network, logger, {
    egress: config.egress,
    dns: opts.dns,
    dnsUpstreams: config.dnsUpstream.trim() ? parseUpstreams(config.dnsUpstream) : undefined,
  });
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
    bootSnapshots: config.bootSnapshots,
    bootSnapshotMaxMiB: config.bootSnapshotMaxMiB,
    bootStandby: config.bootStandby,
    templatesDir: config.templatesDir,
    wakeOnConnect: config.wakeOnConnect,
    onWake: opts.onWake,
  });
  await manager.init();
  const app = await createApiServer({
    name: 'vmm',
    logger,
    description: 'Formation VMM: VM lifecycle over QEMU (KVM or TCG)',
  });
  const lo = opts.logs === false ? null : (opts.logs ?? {});
  let logs: VmLogs | null = null;
  if (lo) {
    const store = new LogStore({ dir: lo.dir ?? join(config.vmDir, '.logs'), maxFileBytes: lo.maxFileBytes });
    logs = { store, collector: new LogCollector({ target: manager, store, logger, pollMs: lo.pollMs }) };
    logs.collector.start();
  }
  registerVmmRoutes(app, manager, opts.nonces ?? new NonceCache(), opts.access, logs ?? undefined);
  opts.routes?.(app, manager);
  await app.ready();
  return {
    app,
    manager,
    driver,
    logs,
    async close(o = {}) {
      await logs?.collector.stop();
      await app.close();
      await manager.close(o);
    },
  };
}
