import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '@formation/service';
import { createStateService } from '../src/index.ts';
import { randomHistory } from './generate.ts';
import { memStore } from './helpers.ts';

const logger = createLogger('silent');
const VIEW_ROUTES = {
  '/network': 'network',
  '/conflicts': 'conflicts',
  '/nodes': 'nodes',
  '/accounts': 'accounts',
  '/instances': 'instances',
  '/formpacks': 'formpacks',
  '/formnet/peers': 'formnetPeers',
  '/formnet/allocations': 'allocations',
  '/dns': 'dns',
  '/dns/domains': 'domains',
  '/ports': 'ports',
} as const;

// The view routes have response schemas (open records): what they serve must be the view, field for field.
test('every view route serves exactly store.views() through its response schema', async () => {
  for (const seed of [1, 2]) {
    const store = memStore();
    const { ops } = randomHistory(seed, 200);
    store.applyBatch(ops);
    const app = await createStateService({ store, logger });
    try {
      const views = JSON.parse(JSON.stringify(store.views()));
      assert.ok(views.instances.length > 0 && views.nodes.length > 0, 'the history made instances and nodes');
      for (const [url, key] of Object.entries(VIEW_ROUTES)) {
        const res = await app.inject({ method: 'GET', url });
        assert.equal(res.statusCode, 200, `${url}: ${res.body}`);
        assert.deepEqual(res.json(), views[key], `GET ${url} (seed ${seed})`);
      }
      const inst = views.instances[0];
      assert.deepEqual((await app.inject({ method: 'GET', url: `/instances/${inst.id}` })).json(), inst);
      const op = ops[ops.length - 1];
      const served = (await app.inject({ method: 'GET', url: `/ops/${op?.hash}` })).json();
      assert.deepEqual(served, JSON.parse(JSON.stringify(store.getOp(op?.hash as string))));
      const sync = (await app.inject({ method: 'POST', url: '/sync', payload: { heads: [], limit: 5 } })).json();
      assert.deepEqual(sync.ops, JSON.parse(JSON.stringify(store.opsSince([], 5))));
    } finally {
      await app.close();
      store.close();
    }
  }
});
