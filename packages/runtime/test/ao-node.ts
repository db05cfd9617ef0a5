// The node the AO end-to-end tests (ans104-signers.e2e, lua-ao.e2e) talk to with the real client
// libraries: its own Redis, a runtime service on loopback and one runtime image with its module.
// Only the set-up lives here; what each file checks stays in the file.
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { RuntimeClient } from '../src/client.ts';
import { loadRuntimeConfig } from '../src/config.ts';
import type { BuiltImage } from '../src/js-image.ts';
import { createRuntimeService, type RuntimeService } from '../src/service.ts';
import { CACHE_DIR, TestRedis, tmp } from './helpers.ts';

/** A new Arweave wallet (RSA-4096 JWK), what an aos or aoconnect user signs with. */
export function arweaveWallet(): JsonWebKey {
  return generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
}

export interface AoTestNodeOptions {
  /** Names the data dir (`tmp(prefix)`). */
  prefix: string;
  nodeName: string;
  /** The node's key, `0x` + 64 hex. */
  prvKey: string;
  /** The only admin: it imports the image and adds the module. */
  admin: KeyPair;
  /** Builds the runtime image (JS or Lua) in the shared cache. */
  buildImage: (cacheDir: string) => Promise<BuiltImage>;
  /** The module that runs that image. */
  module: (imageId: string) => unknown;
}

/**
 * Made when the describe block is (the Redis dir too, as before), started in `before` and stopped in
 * `after`. `stop` undoes whatever part of `start` happened, so a failed start leaves nothing behind.
 */
export class AoTestNode {
  readonly redis: TestRedis | undefined;
  private readonly o: AoTestNodeOptions;
  private svc: RuntimeService | undefined;
  private dataDir = '';

  /** `skip`: the file is skipped, so no Redis dir is made. */
  constructor(o: AoTestNodeOptions, skip: string | undefined) {
    this.o = o;
    this.redis = skip ? undefined : new TestRedis();
  }

  /** Starts Redis and the service, imports the image and adds the module: the service, its URL and the module id. */
  async start(): Promise<{ svc: RuntimeService; url: string; moduleId: string }> {
    await this.redis?.start();
    this.dataDir = tmp(this.o.prefix);
    const config = loadRuntimeConfig({
      flags: {
        port: ':0',
        redisURL: this.redis?.url,
        nodeName: this.o.nodeName,
        nodeURL: 'http://127.0.0.1:8080',
        prvKey: this.o.prvKey,
        dataDir: this.dataDir,
        runcRoot: join(this.dataDir, 'runc'),
        admins: [this.o.admin.address],
      },
    });
    const svc = await createRuntimeService({ config, logger: createLogger('silent') });
    this.svc = svc;
    await svc.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = svc.app.server.address();
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const rt = new RuntimeClient(url, this.o.admin);
    const built = await this.o.buildImage(CACHE_DIR);
    await rt.importImage(built.archive, built.imageId);
    const moduleId = (await rt.addModule(this.o.module(built.imageId))).id;
    return { svc, url, moduleId };
  }

  async stop(): Promise<void> {
    await this.svc?.close().catch(() => undefined);
    await this.redis?.stop();
    if (this.redis) rmSync(this.redis.dir, { recursive: true, force: true });
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
