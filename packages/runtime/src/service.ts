import { join } from 'node:path';
import { NonceCache } from '@formation/identity';
import { type ApiServer, createApiServer, type Logger } from '@formation/service';
import { registerAoRoutes } from './ao.ts';
import { registerRuntimeRoutes } from './api.ts';
import { listenAddress, type RuntimeConfig, runtimeKey } from './config.ts';
import { ImageStore } from './image-store.ts';
import { ProcessManager } from './manager.ts';
import { RedisRuntimeStore } from './redis-store.ts';

export interface RuntimeService {
  app: ApiServer;
  manager: ProcessManager;
  images: ImageStore;
  store: RedisRuntimeStore;
  /** The node id (address of the node key): the AO scheduler id. */
  nodeId: string;
  /** Where `config.port` says to listen. */
  listen: { host: string; port: number };
  /** Stop containers and close Redis (processes stay registered and come back on the next start). */
  close(): Promise<void>;
}

/**
 * Build the compute runtime: connect Redis, load modules, rebuild registered processes, and register
 * the management + AO routes on a Fastify app. The caller listens on `listen` (or mounts the app).
 *
 * @example
 * const rt = await createRuntimeService({ config: loadRuntimeConfig({ file: 'config.yaml' }), logger });
 * await rt.app.listen(rt.listen);
 */
export async function createRuntimeService(opts: {
  config: RuntimeConfig;
  logger: Logger;
  nonces?: NonceCache;
}): Promise<RuntimeService> {
  const { config, logger } = opts;
  const key = runtimeKey(config);
  const store = new RedisRuntimeStore(config.redisURL, logger);
  await store.connect();
  const userns = config.userNamespace ? { hostId: config.userNamespaceHostId, size: 65536 } : undefined;
  const images = new ImageStore(join(config.dataDir, 'images'), logger, userns ? { idShift: userns.hostId } : {});
  const manager = new ProcessManager({
    store,
    images,
    logger,
    dataDir: config.dataDir,
    modulesDir: config.modulesDir ?? join(config.dataDir, 'mod'),
    runcRoot: config.runcRoot,
    runc: config.runc,
    limits: { memoryMiB: config.memoryMiB, cpus: config.cpus, pids: config.pids },
    applyTimeoutMs: config.applyTimeoutMs,
    checkpointEvery: config.checkpointEvery,
    monitorIntervalMs: config.monitorIntervalMs,
    nodeId: key.address,
    nodeUrl: config.nodeURL,
    ...(userns ? { userns } : {}),
  });
  let app: ApiServer;
  try {
    await manager.start();
    app = await createApiServer({
      name: 'runtime',
      logger,
      description: 'HyMatrix/VMDocker-compatible compute runtime',
      bodyLimit: 16 * 1024 * 1024,
    });
    const node = { id: key.address, name: config.nodeName, desc: config.nodeDesc, url: config.nodeURL };
    const nonces = opts.nonces ?? new NonceCache();
    registerRuntimeRoutes(app, {
      manager,
      images,
      cacheDir: join(config.dataDir, 'cache'),
      nonces,
      node,
      admins: config.admins,
    });
    if (config.admins.length === 0)
      logger.warn(
        { component: 'runtime' },
        'no admins configured: nobody may import images or register modules over the API (set admins in config.yaml or FORM_RUNTIME_ADMINS)',
      );
    registerAoRoutes(app, { manager, nonces, node });
  } catch (err) {
    // nothing may keep running (containers, the Redis connection) when start fails
    await manager.close().catch(() => undefined);
    await store.close();
    throw err;
  }
  return {
    app,
    manager,
    images,
    store,
    nodeId: key.address,
    listen: listenAddress(config),
    async close() {
      await app.close();
      await manager.close();
      await store.close();
    },
  };
}
