import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, NonceCache, signRequest } from '@formation/identity';
import { createApiServer, createLogger } from '@formation/service';
import { registerAoRoutes } from '../src/ao.ts';
import { registerRuntimeRoutes } from '../src/api.ts';
import type { ImageStore } from '../src/image-store.ts';
import type { ProcessManager } from '../src/manager.ts';

const proc = {
  id: 'p1',
  moduleId: 'm1',
  owner: '0xabc',
  tags: [{ name: 'Name', value: 'x' }],
  createdAt: '2020-01-01T00:00:00Z',
  lastSequence: 3,
  checkpoint: { sha256: 'aa', sequence: 2 },
  container: { id: 'c1', hostPid: null, alive: true },
  recoveries: 0,
};
const result = {
  messages: [{ target: 't', data: 'd', tags: { A: 'b' } }],
  spawns: [],
  output: 'o',
  data: '',
  error: 'e',
  extra: { z: 1.5 },
};
const entry = { meta: { sequence: 3, itemId: 'i3', from: '0x1' }, message: { action: 'Eval', data: 'x' } };
// The routes have open response schemas: what the manager returns must be served field for field
// (a record manager stands in; the real one needs runc and Redis).
test('runtime and AO routes serve the manager records unchanged through their response schemas', async () => {
  const admin = generateKeyPair();
  const manager = {
    listProcesses: () => [proc],
    listModules: () => [{ id: 'm1', moduleFormat: 'wasm', tags: [{ name: 'a', value: 'b' }] }],
    process: () => proc,
    module: () => ({ id: 'm1', moduleFormat: 'wasm', tags: [] }),
    results: async () => [
      { sequence: 3, itemId: 'i3', result },
      { sequence: 4, itemId: 'i4', result: null },
    ],
    result: async () => ({ sequence: 3, itemId: 'i3', entry, result }),
    send: async () => ({ processId: 'p1', itemId: 'i5', sequence: 5, result }),
  } as unknown as ProcessManager;
  const images = {
    list: async () => [
      {
        id: 'sha256:1',
        repoTags: ['a:b'],
        config: { Env: ['A=1'], Cmd: null },
        rootfs: '/x',
        importedAt: 'now',
        idShift: 5,
      },
    ],
  } as unknown as ImageStore;
  const node = { id: '0xn', name: 'n', desc: 'd', url: 'http://x' };
  const app = await createApiServer({ name: 'rt', logger: createLogger('silent') });
  registerRuntimeRoutes(app, {
    manager,
    images,
    cacheDir: '/x',
    nonces: new NonceCache(),
    node,
    admins: [admin.address],
  });
  registerAoRoutes(app, { manager, nonces: new NonceCache(), node });
  const j = async (url: string) => {
    const r = await app.inject({ method: 'GET', url });
    assert.equal(r.statusCode, 200, r.body);
    return r.json();
  };
  const rt = (x: unknown) => JSON.parse(JSON.stringify(x));
  assert.deepEqual(await j('/processes'), rt({ processes: [proc] }));
  assert.deepEqual(await j('/processes/p1'), rt(proc));
  assert.deepEqual(
    await j('/processes/p1/results'),
    rt({
      results: [
        { sequence: 3, itemId: 'i3', result },
        { sequence: 4, itemId: 'i4', result: null },
      ],
    }),
  );
  assert.deepEqual(await j('/processes/p1/results/3'), rt({ sequence: 3, itemId: 'i3', entry, result }));
  assert.deepEqual(
    await j('/images'),
    rt({
      images: [
        { id: 'sha256:1', repoTags: ['a:b'], config: { Env: ['A=1'], Cmd: null }, importedAt: 'now', idShift: 5 },
      ],
    }),
  );
  assert.deepEqual(await j('/info'), { ...node, modules: 1, processes: 1 });
  assert.deepEqual(await j('/modules'), {
    modules: [{ id: 'm1', ModuleFormat: 'wasm', Tags: [{ name: 'a', value: 'b' }] }],
  });
  assert.deepEqual(await j('/'), { Name: 'n', Unit: 'Scheduler', Address: '0xn', Processes: ['p1'] });
  const ao = { Target: 't', Data: 'd', Tags: [{ name: 'A', value: 'b' }] };
  const aoResult = { Messages: [ao], Spawns: [], Output: { data: 'o' }, GasUsed: 0, Error: 'e' };
  assert.deepEqual(await j('/result/i3?process-id=p1'), aoResult);
  assert.deepEqual((await j('/results/p1')).edges[0], { cursor: '3', node: { Id: 'i3', ...aoResult } });
  const body = JSON.stringify({ action: 'Eval', data: 'x' });
  const k = generateKeyPair();
  const r = await app.inject({
    method: 'POST',
    url: '/processes/p1/messages',
    payload: body,
    headers: {
      'content-type': 'application/json',
      ...signRequest(k, { method: 'POST', path: '/processes/p1/messages', body, audience: app.formIdentity.id }),
    },
  });
  assert.deepEqual(r.json(), rt({ processId: 'p1', itemId: 'i5', sequence: 5, result }));
  await app.close();
});
