// The node the AO end-to-end tests (ans104-signers.e2e, lua-ao.e2e) talk to with the real client
// libraries: its own Redis, a runtime service on loopback and one runtime image with its module.
// Only the set-up lives here; what each file checks stays in the file.
import { generateKeyPairSync, type JsonWebKey } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, type KeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { RuntimeClient } from '../src/client.ts';
import { loadRuntimeConfig } from '../src/config.ts';
import { buildJsRuntimeImage, jsRuntimeModule } from '../src/js-image.ts';
import { buildLuaRuntimeImage, luaRuntimeModule } from '../src/lua-image.ts';
import type { BuiltImage } from '../src/node-image.ts';
import { createRuntimeService, type RuntimeService } from '../src/service.ts';
import { CACHE_DIR, TestRedis, tmp } from './helpers.ts';

/** A new Arweave wallet (RSA-4096 JWK), what an aos or aoconnect user signs with. */
export function arweaveWallet(): JsonWebKey {
  return generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
}

/** What differs between the two runtimes' nodes: its data dir, names, key, image and module. */
interface AoRuntimePreset {
  /** Names the data dir (`tmp(prefix)`). */
  prefix: string;
  nodeName: string;
  /** The node's key, `0x` + 64 hex. */
  prvKey: string;
  /** Builds the runtime image in the shared cache. */
  buildImage: (cacheDir: string) => Promise<BuiltImage>;
  /** The module that runs that image. */
  module: (imageId: string) => unknown;
}

const PRESETS: Record<'js' | 'lua', AoRuntimePreset> = {
  js: {
    prefix: 'arweave',
    nodeName: 'test-node',
    prvKey: `0x${'22'.repeat(32)}`,
    buildImage: buildJsRuntimeImage,
    module: jsRuntimeModule,
  },
  lua: {
    prefix: 'lua-ao',
    nodeName: 'lua-node',
    prvKey: `0x${'33'.repeat(32)}`,
    buildImage: buildLuaRuntimeImage,
    module: luaRuntimeModule,
  },
};

/** What `start` hands a test file. */
export interface AoTestSession {
  svc: RuntimeService;
  url: string;
  moduleId: string;
  /** The user's Arweave wallet (it spawns and owns processes). */
  wallet: JsonWebKey;
  /** Another user's wallet, to be refused. */
  otherWallet: JsonWebKey;
}

/**
 * Made when the describe block is (the Redis dir too, as before), started in `before` and stopped in
 * `after`. `stop` undoes whatever part of `start` happened, so a failed start leaves nothing behind.
 */
export class AoTestNode {
  readonly redis: TestRedis | undefined;
  /** The only admin: it imports the image and adds the module. */
  readonly admin: KeyPair = generateKeyPair();
  private readonly o: AoRuntimePreset;
  private svc: RuntimeService | undefined;
  private dataDir = '';

  /** A node with the `runtime` image and its module; `skip`: the file is skipped, so no Redis dir is made. */
  constructor(runtime: 'js' | 'lua', skip: string | undefined) {
    this.o = PRESETS[runtime];
    this.redis = skip ? undefined : new TestRedis();
  }

  /** Starts Redis and the service, imports the image, adds the module and makes two user wallets. */
  async start(): Promise<AoTestSession> {
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
        admins: [this.admin.address],
      },
    });
    const svc = await createRuntimeService({ config, logger: createLogger('silent') });
    this.svc = svc;
    await svc.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = svc.app.server.address();
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const rt = new RuntimeClient(url, this.admin);
    const built = await this.o.buildImage(CACHE_DIR);
    await rt.importImage(built.archive, built.imageId);
    const moduleId = (await rt.addModule(this.o.module(built.imageId))).id;
    return { svc, url, moduleId, wallet: arweaveWallet(), otherWallet: arweaveWallet() };
  }

  async stop(): Promise<void> {
    await this.svc?.close().catch(() => undefined);
    await this.redis?.stop();
    if (this.redis) rmSync(this.redis.dir, { recursive: true, force: true });
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
