import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { sign } from '@formation/identity';
import { createLogger } from '@formation/service';
import {
  createOp,
  encodeOp,
  httpStateClient,
  localStateClient,
  type StateClient,
  startStateService,
} from '../src/index.ts';
import { claimRunning, instanceBody, key, memStore, nodeBody, stateApi } from './helpers.ts';

const dev = key(10);
const node = key(20);
const mallory = key(66);

async function setup() {
  const store = memStore();
  return { store, app: await stateApi(store) };
}

test('POST /ops accepts, deduplicates, parks and refuses with clear codes', async () => {
  const { app, store } = await setup();
  const reg = createOp(node, 'node.register', nodeBody(1));
  let r = await app.inject({ method: 'POST', url: '/ops', payload: reg });
  assert.equal(r.statusCode, 201);
  assert.deepEqual(r.json(), { status: 'accepted', hash: reg.hash });
  r = await app.inject({ method: 'POST', url: '/ops', payload: reg });
  assert.equal(r.statusCode, 200);
  assert.equal(r.json().status, 'duplicate');

  const forged = { ...createOp(dev, 'account.update', { name: 'x' }), hash: undefined };
  forged.sig = sign(mallory.privateKey, encodeOp(forged));
  r = await app.inject({ method: 'POST', url: '/ops', payload: forged });
  assert.equal(r.statusCode, 401);
  assert.equal(r.json().error.code, 'AUTH_BAD_SIGNATURE');

  r = await app.inject({ method: 'POST', url: '/ops', payload: { ...reg, kind: 'evil', hash: undefined } });
  assert.equal(r.statusCode, 422);
  assert.equal(r.json().error.code, 'STATE_OP_INVALID');
  r = await app.inject({ method: 'POST', url: '/ops', payload: { v: 1, author: 'x' } });
  assert.equal(r.statusCode, 422);
  assert.equal(r.json().error.code, 'STATE_OP_INVALID');
  r = await app.inject({
    method: 'POST',
    url: '/ops',
    headers: { 'content-type': 'application/json' },
    payload: '{nope',
  });
  assert.equal(r.statusCode, 400);

  const create = store.author(dev, 'instance.create', instanceBody('web'));
  const hijack = createOp(mallory, 'instance.delete', { instanceId: create.body.id }, [create.hash]);
  r = await app.inject({ method: 'POST', url: '/ops', payload: hijack });
  assert.equal(r.statusCode, 403);
  assert.equal(r.json().error.code, 'STATE_OP_FORBIDDEN');

  const orphan = createOp(dev, 'account.update', { name: 'later' }, ['cc'.repeat(32)]);
  r = await app.inject({ method: 'POST', url: '/ops', payload: orphan });
  assert.equal(r.statusCode, 202);
  assert.deepEqual(r.json().missing, ['cc'.repeat(32)]);
  assert.equal(store.size, 2);
});

test('reads: ops by hash, heads, digest, sync, views, openapi', async () => {
  const { app, store } = await setup();
  const reg = store.author(node, 'node.register', nodeBody(1));
  const create = store.author(dev, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  claimRunning(store, node, id, '10.129.1.7', 1);
  store.author(node, 'formnet.peer', {
    wgPublicKey: nodeBody(1).wgPublicKey,
    endpoint: '127.0.0.1:51820',
    allowedIps: ['10.129.1.0/24'],
  });
  store.author(node, 'formnet.allocate', { address: '10.129.1.7', peer: id, kind: 'instance' });
  store.author(dev, 'formpack.publish', {
    id: 'ab'.repeat(32),
    name: 'hello',
    owner: dev.address,
    sha256s: { disk: 'cd'.repeat(32) },
    size: 10,
  });

  assert.deepEqual((await app.inject({ url: `/ops/${reg.hash}` })).json(), reg);
  const nf = await app.inject({ url: `/ops/${'00'.repeat(32)}` });
  assert.equal(nf.statusCode, 404);
  assert.equal(nf.json().error.code, 'STATE_OP_NOT_FOUND');
  assert.deepEqual((await app.inject({ url: '/heads' })).json(), { heads: store.heads(), size: 7 });
  assert.equal((await app.inject({ url: '/digest' })).json().digest, store.digest());
  const sync = (await app.inject({ method: 'POST', url: '/sync', payload: { heads: [reg.hash], limit: 100 } })).json();
  assert.equal(sync.ops.length, 6);
  assert.deepEqual(sync.heads, store.heads());
  const nodes = (await app.inject({ url: '/nodes' })).json();
  assert.equal(nodes[0].id, node.publicKey);
  assert.equal((await app.inject({ url: '/instances' })).json()[0].id, id);
  const inst = (await app.inject({ url: `/instances/${id}` })).json();
  assert.equal(inst.replicaSet[0].formnetIp, '10.129.1.7');
  assert.equal((await app.inject({ url: '/instances/nope' })).statusCode, 404);
  assert.equal((await app.inject({ url: '/formpacks' })).json()[0].name, 'hello');
  assert.equal((await app.inject({ url: '/formnet/peers' })).json()[0].publicKey, node.publicKey);
  assert.equal((await app.inject({ url: '/formnet/allocations' })).json()[0].peer, id);
  const dns = (await app.inject({ url: '/dns' })).json();
  assert.ok(
    dns.some(
      (d: { name: string; addresses: string[] }) =>
        d.name === 'web.dev.formation.local' && d.addresses[0] === '10.129.1.7',
    ),
  );
  const openapi = (await app.inject({ url: '/openapi.json' })).json();
  for (const p of ['/ops', '/ops/{hash}', '/heads', '/digest', '/sync', '/nodes', '/instances/{id}', '/dns'])
    assert.ok(openapi.paths[p], p);
  const batch = await app.inject({ method: 'POST', url: '/ops/batch', payload: { ops: [reg, { bogus: 1 }] } });
  assert.deepEqual(batch.json().duplicates, [reg.hash]);
  assert.equal(batch.json().rejected[0].code, 'STATE_OP_INVALID');
});

async function clientFlow(client: StateClient) {
  await client.author(node, 'node.register', nodeBody(3));
  const create = await client.author(dev, 'instance.create', instanceBody('api'));
  const id = create.body.id as string;
  await client.author(node, 'instance.claim', { instanceId: id, node: node.publicKey });
  // Only the owner commits (a replica's node may not: issue 16).
  await client.author(dev, 'instance.commit', { instanceId: id, revision: 2, hash: 'ef'.repeat(32) });
  await client.author(dev, 'instance.update', { instanceId: id, replicas: 2 });
  await client.author(node, 'formnet.allocate', { address: '10.128.3.3', peer: dev.publicKey, kind: 'developer' });
  const inst = await client.instance(id);
  assert.equal(inst?.replicas, 2);
  assert.equal(inst?.revision, 2);
  assert.equal((await client.allocations())[0]?.peer, dev.publicKey);
  assert.equal(await client.instance('nope'), undefined);
  assert.equal((await client.heads()).length, 1);
  return client.digest();
}

test('in-process and HTTP clients behave the same', async () => {
  const local = await clientFlow(localStateClient(memStore()));
  const { app, url } = await startStateService({ store: memStore(), logger: createLogger('silent'), port: 0 });
  after(() => app.close());
  const remote = await clientFlow(httpStateClient(url));
  assert.equal(typeof remote, 'string');
  assert.equal(typeof local, 'string');
});

test('freeAddress picks the lowest unallocated address of a range', () => {
  const s = memStore();
  s.author(node, 'node.register', nodeBody(5));
  assert.equal(s.freeAddress('10.128.5.0/24'), '10.128.5.1');
  s.author(node, 'formnet.allocate', { address: '10.128.5.1', peer: node.publicKey, kind: 'node' });
  assert.equal(s.freeAddress('10.128.5.0/24'), '10.128.5.2');
  assert.equal(s.freeAddress('10.128.5.1/31'), undefined);
  assert.throws(() => s.freeAddress('nope'), /CIDR/);
});
