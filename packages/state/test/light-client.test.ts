// `@formation/state/client` (the CLI's light client) must behave exactly like the index's httpStateClient.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@formation/service';
import * as light from '@formation/state/client';
import { httpStateClient, type StateClient, startStateService } from '../src/index.ts';
import { instanceBody, key, memStore, nodeBody } from './helpers.ts';

const dev = key(10);
const node = key(20);
const store = memStore();
store.author(node, 'node.register', nodeBody(1));
const web = store.author(dev, 'instance.create', instanceBody('web'));
const id = web.body.id as string;
store.author(node, 'instance.claim', { instanceId: id, node: node.publicKey });
const { app, url } = await startStateService({ store, logger: createLogger('silent'), port: 0 });
after(() => app.close());

test('the light client loads neither the store (node:sqlite) nor the op schemas (TypeBox) nor Fastify', () => {
  const probe = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.push(r.url); return r; } });
    const m = await import('@formation/state/client');
    console.log(JSON.stringify({ exports: Object.keys(m).sort(), seen }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', probe], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const { exports, seen } = JSON.parse(r.stdout) as { exports: string[]; seen: string[] };
  assert.deepEqual(exports, ['httpStateClient', 'shipFormpack']);
  assert.ok(seen.some((u) => u.endsWith('/state/src/light-client.ts')));
  const heavy = seen.filter((u) => /\/(store|kinds|service|views)\.ts$|node:sqlite|fastify|typebox/.test(u));
  assert.deepEqual(heavy, []);
});

test('reads answer the same through the light and the full client', async () => {
  const full = httpStateClient(url);
  const lite = light.httpStateClient(url);
  const reads: Array<(c: StateClient) => Promise<unknown>> = [
    (c) => c.heads(),
    (c) => c.digest(),
    (c) => c.nodes(),
    (c) => c.instances(),
    (c) => c.instance(id),
    (c) => c.instance('00'.repeat(16)),
    (c) => c.formpacks(),
    (c) => c.formnetPeers(),
    (c) => c.allocations(),
    (c) => c.dns(),
    (c) => c.getOp(web.hash),
    (c) => c.getOp('ff'.repeat(32)),
    (c) => c.sync([]),
    (c) => c.sync([], 1),
  ];
  for (const read of reads) assert.deepEqual(await read(lite), await read(full), String(read));
  assert.equal(await lite.instance('00'.repeat(16)), undefined);
  assert.equal(await lite.getOp('ff'.repeat(32)), undefined);
});

test('writes through the light client: author, submit (duplicate), errors with codes', async () => {
  const lite = light.httpStateClient(url);
  const op = await lite.author(dev, 'instance.update', { instanceId: id, desired: 'stopped' });
  assert.equal((await lite.instance(id))?.desired, 'stopped');
  assert.deepEqual(await lite.submit(op), { status: 'duplicate', hash: op.hash });
  const created = await lite.author(dev, 'instance.create', instanceBody('api'));
  assert.match(String(created.body.id), /^[0-9a-f]{32}$/);
  assert.equal((await lite.instances()).length, 2);
  await assert.rejects(lite.author(key(66), 'instance.delete', { instanceId: id }), { code: 'STATE_OP_FORBIDDEN' });
  await assert.rejects(light.httpStateClient('http://127.0.0.1:9').nodes(), { code: 'UNAVAILABLE' });
});
