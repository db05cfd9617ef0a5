import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type KeyPair, signRequest } from '@formation/identity';
import { apiIdentity } from '@formation/service';
import { type InstanceView, resolveInstanceRef } from '../src/index.ts';
import { claimRunning, FORMPACK_ID, instanceBody, key, memStore, nodeBody, stateApi } from './helpers.ts';

// GET /instances/:id/events: a signed read for the owner or a node of the network; others refused.

const dev = key(10);
const node = key(20);
const mallory = key(66);

async function setup() {
  const store = memStore();
  const app = await stateApi(store);
  store.author(node, 'node.register', nodeBody(1));
  const create = store.author(dev, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  claimRunning(store, node, id, '10.129.1.5');
  const get = async (url: string, k: KeyPair | null) => {
    const headers = k ? signRequest(k, { method: 'GET', path: url, body: '', audience: apiIdentity(app) }) : {};
    const r = await app.inject({ method: 'GET', url, headers });
    return { status: r.statusCode, body: r.json() };
  };
  return { store, app, id, get };
}

test('the owner reads the events of an instance by id, by name and by Formpack id', async () => {
  const { app, id, get } = await setup();
  for (const ref of [id, 'web', FORMPACK_ID]) {
    const r = await get(`/instances/${ref}/events`, dev);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.instance.id, id);
    assert.deepEqual(
      r.body.events.map((e: { kind: string }) => e.kind),
      ['created', 'claimed', 'running'],
    );
    assert.equal(r.body.events[1].node, node.publicKey);
    assert.equal(r.body.events[0].author, dev.publicKey);
  }
  await app.close();
});

test('a node of the network reads them; a stranger key gets 403 (by id) or 404 (by name); unsigned 401', async () => {
  const { app, id, get } = await setup();
  assert.equal((await get(`/instances/${id}/events`, node)).status, 200);
  const byId = await get(`/instances/${id}/events`, mallory);
  assert.equal(byId.status, 403);
  assert.equal(byId.body.error.code, 'AUTH_FORBIDDEN');
  assert.equal(JSON.stringify(byId.body).includes('created'), false);
  const byName = await get('/instances/web/events', mallory);
  assert.equal(byName.status, 404);
  assert.equal(byName.body.error.code, 'INSTANCE_NOT_FOUND');
  const unsigned = await get(`/instances/${id}/events`, null);
  assert.equal(unsigned.status, 401);
  await app.close();
});

test('since filters; a bad since is a coded 400', async () => {
  const { app, id, get } = await setup();
  const all = await get(`/instances/${id}/events`, dev);
  assert.equal(all.body.events.length, 3);
  const future = new Date(Date.now() + 60_000).toISOString();
  const none = await get(`/instances/${id}/events?since=${encodeURIComponent(future)}`, dev);
  assert.equal(none.status, 200);
  assert.deepEqual(none.body.events, []);
  const recent = await get(`/instances/${id}/events?since=10m`, dev);
  assert.equal(recent.body.events.length, 3);
  const bad = await get(`/instances/${id}/events?since=yesterday`, dev);
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'BAD_REQUEST');
  assert.match(bad.body.error.message, /Cannot read events since "yesterday"/);
  await app.close();
});

test('resolveInstanceRef: Formpack id → every live instance of the owner with it; names only among the owner’s', () => {
  const mk = (id: string, name: string, owner: string, formpackId: string, deleted = false) =>
    ({ id, name, ownerAddress: owner, formpackId, deleted }) as InstanceView;
  const A = '0xaaaa';
  const B = '0xbbbb';
  const P = 'ab'.repeat(32);
  const list = [
    mk('1'.repeat(32), 'web', A, P),
    mk('2'.repeat(32), 'api', A, P),
    mk('3'.repeat(32), 'web', B, P),
    mk('4'.repeat(32), 'old', A, P, true),
  ];
  assert.deepEqual(
    resolveInstanceRef(list, P, A).map((i) => i.name),
    ['web', 'api'],
  );
  assert.deepEqual(
    resolveInstanceRef(list, 'web', B).map((i) => i.id),
    ['3'.repeat(32)],
  );
  assert.deepEqual(resolveInstanceRef(list, 'api', B), []);
  assert.deepEqual(
    resolveInstanceRef(list, '4'.repeat(32), B).map((i) => i.name),
    ['old'],
  );
  assert.deepEqual(resolveInstanceRef(list, 'c'.repeat(64), A), []);
});
