// The state the ingress fixtures build before their namespaces come up (fixtures/ingress-world.ts), checked
// without root: every node admitted and registered with its slice and endpoint, the replica running at
// its formnet address on the node that claimed it, the same through an asynchronous author (a state
// API client), and the DNS name the ingress routes by.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openStateStore } from '@formation/state';
import {
  admittedNetwork,
  createdInstance,
  fixtureKey,
  runningReplica,
  WEB_HEALTHCHECK,
} from './fixtures/ingress-world.ts';

test('admittedNetwork: every node admitted and registered with its slice, endpoint and WireGuard key', () => {
  const [admin, me, other] = [fixtureKey(1), fixtureKey(20), fixtureKey(21)];
  const store = openStateStore({ path: ':memory:', domain: 'fdi.test' });
  admittedNetwork(store, admin, 'fdi', [me, other], { endpoint: (i) => `198.51.100.11:${4001 + i}`, firstSlice: 1 });
  const nodes = store.views().nodes.map((n) => ({
    id: n.id,
    admitted: n.admitted,
    endpoint: n.endpoint,
    range: n.formnetRange,
    wg: n.wgPublicKey,
    peer: n.p2pPeerId,
  }));
  assert.deepEqual(
    nodes.sort((a, b) => a.range.localeCompare(b.range)),
    [
      {
        id: me.publicKey,
        admitted: true,
        endpoint: '198.51.100.11:4001',
        range: '10.129.1.0/24',
        wg: `${'A'.repeat(42)}A=`,
        peer: '12D3KooPeer0',
      },
      {
        id: other.publicKey,
        admitted: true,
        endpoint: '198.51.100.11:4002',
        range: '10.129.2.0/24',
        wg: `${'B'.repeat(42)}A=`,
        peer: '12D3KooPeer1',
      },
    ],
  );
  store.close();
});

test('runningReplica: the owner’s instance runs at the address on the node that claimed it (store or async client)', async () => {
  const [admin, me, alice] = [fixtureKey(1), fixtureKey(20), fixtureKey(10)];
  for (const async of [false, true]) {
    const store = openStateStore({ path: ':memory:', domain: 'fh3.test' });
    admittedNetwork(store, admin, 'fh3', [me], { endpoint: () => '127.0.0.1:4001' });
    const author = async
      ? (k: typeof me, kind: Parameters<typeof store.author>[1], body: Record<string, unknown>) =>
          Promise.resolve(store.author(k, kind, body))
      : store.author.bind(store);
    const id = await runningReplica(author, alice, me, {
      pack: 'ab'.repeat(32),
      name: 'web',
      service: { expose: [8080], healthcheck: WEB_HEALTHCHECK },
      ip: '10.129.0.2',
    });
    const inst = store.views().instances.find((i) => i.id === id);
    assert.ok(inst, `async ${async}: the instance exists`);
    assert.equal(inst.formpackId, 'ab'.repeat(32));
    assert.deepEqual(inst.resources, { vcpu: 1, memMiB: 512, diskGiB: 5 });
    assert.deepEqual(
      inst.replicaSet.map((r) => ({ node: r.node, state: r.state, ip: r.formnetIp })),
      [{ node: me.publicKey, state: 'running', ip: '10.129.0.2' }],
    );
    assert.deepEqual(store.views().dns.find((d) => d.name === 'web.fh3.test')?.addresses, ['10.129.0.2']);
    store.close();
  }
});

test('createdInstance: the owner’s instance exists with its Formpack’s service, no replica claimed or running', async () => {
  const [admin, me, dev] = [fixtureKey(1), fixtureKey(20), fixtureKey(10)];
  const store = openStateStore({ path: ':memory:', domain: 'fdi.test' });
  admittedNetwork(store, admin, 'fdi', [me], { endpoint: () => '127.0.0.1:4001' });
  const id = await createdInstance(store.author.bind(store), dev, {
    pack: 'cd'.repeat(32),
    name: 'hello',
    service: { expose: [80] },
    resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
  });
  const inst = store.views().instances.find((i) => i.id === id);
  assert.ok(inst);
  assert.equal(inst.name, 'hello');
  assert.equal(inst.ownerAddress, dev.address);
  assert.deepEqual(inst.resources, { vcpu: 1, memMiB: 256, diskGiB: 1 });
  assert.deepEqual(
    inst.replicaSet.filter((r) => r.state === 'running'),
    [],
  );
  assert.deepEqual(store.views().formpacks.find((f) => f.id === 'cd'.repeat(32))?.service, { expose: [80] });
  store.close();
});
