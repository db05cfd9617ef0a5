import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { requireOrSkip } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { RedisRuntimeStore } from '../src/redis-store.ts';
import { freePort, TestRedis } from './helpers.ts';
import { runtimeStoreContract } from './runtime-store.contract.ts';

// The Redis store against the RuntimeStore contract, on our own redis-server (a free loopback port,
// data in a temp dir), plus what only Redis has: connecting, and its key prefix. Needs redis-server
// only (no root, no runc); skips without it, fails with FORM_REQUIRE_INTEGRATION=1.

const skip = requireOrSkip('runtime Redis store test', { programs: ['redis-server', 'redis-cli'] });
const logger = createLogger('silent');

async function connected(url: string): Promise<RedisRuntimeStore> {
  const store = new RedisRuntimeStore(url, logger);
  await store.connect(5_000);
  return store;
}

let server: TestRedis | undefined;
const stores: RedisRuntimeStore[] = [];

async function startServer(): Promise<TestRedis> {
  if (server) return server;
  server = new TestRedis();
  await server.start();
  return server;
}

after(async () => {
  for (const s of stores.splice(0)) await s.close();
  await server?.stop();
  if (server) rmSync(server.dir, { recursive: true, force: true });
});

runtimeStoreContract(
  'redis',
  async () => {
    const redis = await startServer();
    return {
      async fresh() {
        const store = await connected(redis.url);
        stores.push(store);
        await store.redis.flushdb();
        return store;
      },
      async reopen() {
        const store = await connected(redis.url);
        stores.push(store);
        return store;
      },
      close: async () => undefined,
    };
  },
  { skip },
);

describe('RedisRuntimeStore', { skip }, () => {
  it('keeps everything under keys that start formrt:', async () => {
    const redis = await startServer();
    const store = await connected(redis.url);
    stores.push(store);
    await store.redis.flushdb();
    await store.putModule({ id: 'm', moduleFormat: 'f', tags: [] });
    await store.putMessage('p', {
      from: 'x',
      meta: {
        itemId: 'i',
        processId: 'p',
        action: 'A',
        sender: 'x',
        sequence: 1,
        nonce: 1,
        timestamp: 0,
        params: {},
        data: '',
        mode: 'apply',
      },
    });
    await store.putResult('p', 1, { messages: [], spawns: [], output: '', data: '' });
    const keys = (await store.redis.keys('*')).sort();
    assert.deepEqual(keys, ['formrt:ids:p', 'formrt:log:p', 'formrt:modules', 'formrt:results:p']);
  });

  it('refuses to start when Redis does not answer: UNAVAILABLE with the address and a hint', async () => {
    const port = await freePort();
    const store = new RedisRuntimeStore(`redis://127.0.0.1:${port}/0`, logger);
    await assert.rejects(store.connect(1_000), (err: Error & { code?: string; hint?: string }) => {
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, new RegExp(`^Cannot connect to Redis at 127\\.0\\.0\\.1:${port}: `));
      assert.match(String(err.hint), /redis-server/);
      return true;
    });
  });
});
