import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { createOp, PORT_CLAIMS_PER_ACCOUNT, publicPortProblem, type StateStore } from '../src/index.ts';
import { instanceBody, key, memStore, nodeBody } from './helpers.ts';

/**
 * Plain TCP port mappings (issue 19): an owner claims a public port for an instance (port.claim),
 * admitted nodes grant it (port.granted), a quorum makes it active; the first granted claim by
 * (ts, hash) holds a port. Every refusal and the backdating attack have their test.
 */

const admin = key(1);
const alice = key(10);
const mallory = key(66);
const [nodeA, nodeB, nodeC] = [key(20), key(21), key(22)];

const refused = (code: string, re: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === code && re.test(e.message);

function network(nodes = 2, store: StateStore = memStore()) {
  store.author(admin, 'network.init', { name: 't', admission: 'admins', admins: [admin.publicKey] });
  for (const [i, n] of [nodeA, nodeB, nodeC].slice(0, nodes).entries()) {
    store.author(admin, 'node.admit', { node: n.publicKey, formnetRange: `10.129.${i + 1}.0/24` });
    store.author(n, 'node.register', { ...nodeBody(i + 1), formnetRange: `10.129.${i + 1}.0/24` });
  }
  const web = store.author(alice, 'instance.create', instanceBody('db')).body.id as string;
  const evil = store.author(mallory, 'instance.create', instanceBody('evil')).body.id as string;
  return { store, web, evil };
}
const port = (store: StateStore, p: number, who = alice) =>
  store.views().ports.find((x) => x.port === p && x.owner === who.publicKey);
const grant = (store: StateStore, n: typeof nodeA, claim: string, p: number, ts?: number) =>
  store.author(n, 'port.granted', { claim, port: p }, ts);

test('restricted ports: below 1024 and the node service ports are refused with the reason', () => {
  const cases: Array<[number, RegExp | null]> = [
    [5432, null],
    [1024, null],
    [65535, null],
    [22, /below 1024/],
    [53, /below 1024/],
    [80, /below 1024/],
    [443, /below 1024/],
    [3001, /node.* own service ports/],
    [3004, /own service ports/],
    [3005, /own service ports/],
    [51820, /own service ports/],
    [6379, /own service ports/],
    [0, /not a TCP port/],
  ];
  for (const [p, want] of cases) {
    const got = publicPortProblem(p);
    if (want === null) assert.equal(got, null, String(p));
    else assert.match(got ?? '', want, String(p));
  }
  const { store, web } = network(1);
  for (const p of [443, 3004, 51820]) {
    assert.throws(
      () => store.author(alice, 'port.claim', { instanceId: web, port: p, target: p }),
      refused('STATE_OP_INVALID', /port.claim: port/),
    );
  }
  assert.deepEqual(store.views().ports, []);
});

test('a claim is pending until a quorum of admitted nodes grants it, then active', () => {
  const { store, web } = network(2);
  const c = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 });
  assert.equal(port(store, 5432)?.state, 'pending');
  grant(store, nodeA, c.hash, 5432);
  assert.equal(port(store, 5432)?.state, 'pending');
  grant(store, nodeB, c.hash, 5432);
  const v = port(store, 5432);
  assert.equal(v?.state, 'active');
  assert.equal(v?.target, 5432);
  assert.equal(v?.instanceId, web);
});

test('refused: a claim for someone else’s instance, a grant by a non-node or for another port', () => {
  const { store, web } = network(1);
  assert.throws(
    () => store.author(mallory, 'port.claim', { instanceId: web, port: 5432, target: 5432 }),
    refused('STATE_OP_FORBIDDEN', /only the owner of instance/),
  );
  const c = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 });
  assert.throws(() => grant(store, mallory, c.hash, 5432), refused('STATE_OP_FORBIDDEN', /only a node/));
  assert.throws(() => grant(store, nodeA, c.hash, 6000), refused('STATE_OP_INVALID', /is for port 5432/));
  assert.equal(port(store, 5432)?.state, 'pending');
});

test('the API refuses a port another owner holds (CONFLICT), and the quota per account', () => {
  const { store, web, evil } = network(1);
  const c = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 });
  grant(store, nodeA, c.hash, 5432);
  assert.throws(
    () => store.author(mallory, 'port.claim', { instanceId: evil, port: 5432, target: 22 }),
    refused('CONFLICT', /another owner's instance holds it/),
  );
  for (let i = 1; i < PORT_CLAIMS_PER_ACCOUNT; i++)
    store.author(alice, 'port.claim', { instanceId: web, port: 6000 + i, target: 80 });
  assert.throws(
    () => store.author(alice, 'port.claim', { instanceId: web, port: 7000, target: 80 }),
    refused('CONFLICT', /already has 4 port claims/),
  );
});

test('attack: a claim backdated before the holder’s, forced past the API, gets no port', () => {
  const { store, web, evil } = network(2);
  const c = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 });
  grant(store, nodeA, c.hash, 5432);
  grant(store, nodeB, c.hash, 5432);
  // Mallory signs a claim dated an hour earlier with minimal deps and submits it directly (gossip path).
  const create = store.views().instances.find((i) => i.id === evil)?.createdBy as string;
  const early = createOp(
    mallory,
    'port.claim',
    { instanceId: evil, port: 5432, target: 22 },
    [create],
    Date.now() - 3_600_000,
  );
  store.submit(early);
  assert.equal(port(store, 5432)?.state, 'active', 'the holder keeps it');
  assert.equal(port(store, 5432, mallory)?.state, 'pending', 'honest nodes never grant a held port');
  // With one colluding node it stays pending (quorum 2); with two it is granted — and only then the
  // (ts, hash) order gives it the port: the limit of a 2-node quorum, said in the README.
  grant(store, nodeA, early.hash, 5432);
  assert.equal(port(store, 5432)?.state, 'active');
  assert.equal(port(store, 5432, mallory)?.state, 'pending');
});

test('two owners in a race: both granted, the first claim by (ts, hash) holds, the other is taken; release hands it on', () => {
  const { store, web, evil } = network(2);
  const t = Date.now();
  const a = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 }, t);
  const m = store.author(mallory, 'port.claim', { instanceId: evil, port: 5432, target: 5432 }, t + 1);
  for (const n of [nodeA, nodeB]) {
    grant(store, n, a.hash, 5432);
    grant(store, n, m.hash, 5432);
  }
  assert.equal(port(store, 5432)?.state, 'active');
  assert.equal(port(store, 5432, mallory)?.state, 'taken');
  store.author(alice, 'port.release', { port: 5432 });
  assert.equal(port(store, 5432), undefined);
  assert.equal(port(store, 5432, mallory)?.state, 'active');
});

test('deleting the instance ends its claims', () => {
  const { store, web } = network(1);
  const c = store.author(alice, 'port.claim', { instanceId: web, port: 5432, target: 5432 });
  grant(store, nodeA, c.hash, 5432);
  assert.equal(port(store, 5432)?.state, 'active');
  store.author(alice, 'instance.delete', { instanceId: web });
  assert.equal(port(store, 5432), undefined);
});
