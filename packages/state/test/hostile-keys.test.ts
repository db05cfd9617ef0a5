import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createDelegation, delegatedKey, generateWireGuardKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createOp, instanceIdOf, networkView, type Op, openStateStore, type StateStore } from '../src/index.ts';
import { claimRunning, FORMPACK_ID, instanceBody, key, memStore, nodeBody, stateApi } from './helpers.ts';

/**
 * Issue 16, state level: what a fresh key (or an admitted but malicious node) can do with nothing but
 * the state API. Every test here failed on the code before the fix.
 */

const admin = key(1);
const victim = key(10);
const honestNode = key(20);
const otherNode = key(21);
const mallory = key(66);

const refused = (code: string, re: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === code && re.test(e.message);

/** A network whose admin admitted `honestNode` (10.129.1.0/24), with the victim's instance placed there. */
function network(store: StateStore = memStore()) {
  const init = store.author(admin, 'network.init', { name: 'test', admission: 'admins', admins: [admin.publicKey] });
  store.author(admin, 'node.admit', { node: honestNode.publicKey, formnetRange: '10.129.1.0/24' });
  store.author(honestNode, 'node.register', { ...nodeBody(1), formnetRange: '10.129.1.0/24' });
  const create = store.author(victim, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  store.author(honestNode, 'instance.claim', { instanceId: id, node: honestNode.publicKey });
  store.author(victim, 'instance.commit', { instanceId: id, revision: 1, hash: 'a1'.repeat(32) });
  return { store, init, create, id };
}

test('attack 1: a claim grants nothing over content; only the owner makes a revision current', () => {
  const { store, create, id } = network();
  // Mallory registers as a node, claims the victim's instance and commits a revision of its choice.
  store.author(mallory, 'node.register', { ...nodeBody(66), formnetRange: '10.129.66.0/24' });
  const claim = store.author(mallory, 'instance.claim', { instanceId: id, node: mallory.publicKey });
  const commit = createOp(
    mallory,
    'instance.commit',
    { instanceId: id, revision: Number.MAX_SAFE_INTEGER, hash: 'ee'.repeat(32) },
    [claim.hash, create.hash],
  );
  assert.throws(() => store.submit(commit), refused('STATE_OP_FORBIDDEN', /only the owner/));
  // Even the honest replica holder cannot impose a revision: it offers, the owner commits.
  const honestClaim = store.viewIndex.claimOf(id, honestNode.publicKey) as string;
  assert.throws(
    () =>
      store.submit(
        createOp(honestNode, 'instance.commit', { instanceId: id, revision: 2, hash: 'b2'.repeat(32) }, [honestClaim]),
      ),
    refused('STATE_OP_FORBIDDEN', /only the owner/),
  );
  const inst = store.views().instances.find((i) => i.id === id);
  assert.equal(inst?.revision, 1);
  assert.equal(inst?.revisionHash, 'a1'.repeat(32));
  // Mallory's claim does not count either: it is not an admitted node.
  assert.deepEqual(
    inst?.replicaSet.map((r) => r.node),
    [honestNode.publicKey],
  );
  store.close();
});

test('attack 2: ops dated far in the future are refused (store, POST /ops, /ops/batch) and never count as alive', async () => {
  const store = memStore();
  store.author(honestNode, 'node.register', nodeBody(1));
  const forever = createOp(honestNode, 'node.heartbeat', { status: 'healthy' }, store.heads(), 9e15);
  assert.throws(() => store.submit(forever), refused('STATE_OP_INVALID', /in the future/));
  const app = await stateApi(store);
  let r = await app.inject({ method: 'POST', url: '/ops', payload: forever });
  assert.equal(r.statusCode, 422);
  assert.match(r.json().error.message, /ahead of this node's clock/);
  r = await app.inject({ method: 'POST', url: '/ops/batch', payload: { ops: [forever] } });
  assert.equal(r.json().rejected[0]?.code, 'STATE_OP_INVALID');
  assert.equal(store.has(forever.hash), false);
  // Every kind, not only heartbeats.
  assert.throws(
    () => store.submit(createOp(victim, 'account.update', { name: 'x' }, [], Date.now() + 3_600_000)),
    refused('STATE_OP_INVALID', /in the future/),
  );
  // A few seconds of skew are fine.
  store.submit(createOp(victim, 'account.update', { name: 'y' }, [], Date.now() + 5_000));
  await app.close();

  // A replica whose clock was wrong (or that ran without the check) still never shows a future beat as alive.
  const lax = openStateStore({ path: ':memory:', maxFutureMs: Number.POSITIVE_INFINITY });
  lax.author(honestNode, 'node.register', nodeBody(1));
  lax.submit(createOp(honestNode, 'node.heartbeat', { status: 'healthy' }, lax.heads(), 9e15));
  assert.equal(lax.views().nodes[0]?.heartbeat, null, 'a beat from the future is not a beat');
  lax.close();
  store.close();
});

test('attack 3: admission: unadmitted keys never place, claim, report, route or count as alive', () => {
  const { store, init, id } = network();
  assert.deepEqual(networkView(store).admins, [admin.publicKey]);
  assert.equal(networkView(store).policy, 'admins');
  assert.equal(networkView(store).genesis, init.hash);
  // Mallory registers, beats, claims, reports, allocates and publishes a peer: none of it counts.
  store.author(mallory, 'node.register', { ...nodeBody(66), formnetRange: '10.129.66.0/24' });
  store.author(mallory, 'node.heartbeat', { status: 'healthy' });
  claimRunning(store, mallory, id, '10.129.66.2', 1);
  store.author(mallory, 'formnet.peer', { wgPublicKey: generateWireGuardKeyPair().publicKey, allowedIps: [] });
  const v = store.views();
  assert.deepEqual(
    v.nodes.map((n) => n.id),
    [honestNode.publicKey],
  );
  assert.equal(v.nodes[0]?.admitted, true);
  assert.equal(v.nodes[0]?.formnetRange, '10.129.1.0/24');
  assert.deepEqual(networkView(store).pending, [mallory.publicKey]);
  assert.deepEqual(
    v.instances[0]?.replicaSet.map((r) => r.node),
    [honestNode.publicKey],
  );
  assert.equal(v.formnetPeers.length, 0);
  assert.equal(
    v.dns.some((d) => d.addresses.includes('10.129.66.2')),
    false,
  );

  // Only an admin admits, and only citing this network's genesis.
  assert.throws(
    () => store.author(mallory, 'node.admit', { node: mallory.publicKey, formnetRange: '10.129.66.0/24' }),
    refused('STATE_OP_FORBIDDEN', /admin/),
  );
  assert.throws(
    () => store.submit(createOp(admin, 'node.admit', { node: mallory.publicKey, formnetRange: '10.129.66.0/24' }, [])),
    refused('STATE_OP_INVALID', /network\.init/),
  );
  // Another network's genesis (anyone can make one) is refused, and so is anything citing it.
  const rival = createOp(mallory, 'network.init', { name: 'evil', admission: 'open', admins: [mallory.publicKey] }, []);
  assert.throws(() => store.submit(rival), refused('STATE_OP_FORBIDDEN', /another network/));
  // A genesis must have no deps.
  assert.throws(
    () =>
      store.submit(
        createOp(admin, 'network.init', { name: 'x', admission: 'open', admins: [admin.publicKey] }, [init.hash]),
      ),
    refused('STATE_OP_INVALID', /no deps/),
  );

  // Admitted, then removed: its claims and beats stop counting.
  store.author(admin, 'node.admit', { node: otherNode.publicKey, formnetRange: '10.129.2.0/24' });
  store.author(otherNode, 'node.register', { ...nodeBody(2), formnetRange: '10.129.2.0/24' });
  store.author(otherNode, 'instance.claim', { instanceId: id, node: otherNode.publicKey });
  assert.equal(store.views().instances[0]?.replicaSet.length, 2);
  store.author(admin, 'node.remove', { node: otherNode.publicKey });
  assert.deepEqual(
    store.views().instances[0]?.replicaSet.map((r) => r.node),
    [honestNode.publicKey],
  );
  assert.deepEqual(
    store.views().nodes.map((n) => n.id),
    [honestNode.publicKey],
  );
  store.close();
});

test('attack 3: the genesis is trusted on first use and persisted; a store without one is legacy-open', () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-genesis-'));
  try {
    const path = join(dir, 'state.db');
    const legacy = memStore();
    legacy.author(honestNode, 'node.register', nodeBody(1));
    assert.equal(networkView(legacy).policy, 'legacy-open');
    assert.equal(networkView(legacy).genesis, null);
    assert.equal(legacy.views().nodes.length, 1, 'legacy networks keep working');
    // A legacy network that already has nodes cannot be taken over by a late genesis.
    assert.throws(
      () =>
        legacy.submit(
          createOp(mallory, 'network.init', { name: 'evil', admission: 'admins', admins: [mallory.publicKey] }, []),
        ),
      refused('STATE_OP_FORBIDDEN', /legacy/),
    );
    legacy.close();

    const a = openStateStore({ path });
    const { init } = network(a);
    a.close();
    const b = openStateStore({ path });
    assert.equal(networkView(b).genesis, init.hash, 'the adopted genesis is persisted');
    b.close();
    // Opening with another genesis than the one persisted is refused.
    assert.throws(() => openStateStore({ path, genesis: 'ff'.repeat(32) }), refused('CONFLICT', /genesis/));
    // A new replica told the genesis refuses a rival that reaches it first.
    const c = openStateStore({ path: ':memory:', genesis: init.hash });
    const rival = createOp(
      mallory,
      'network.init',
      { name: 'evil', admission: 'open', admins: [mallory.publicKey] },
      [],
    );
    assert.equal(c.applyBatch([rival, init]).rejected.length, 1);
    assert.equal(networkView(c).genesis, init.hash);
    c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('attack 4: ranges must be one formnet slice; overlapping ranges lose routing; peers hold only what is theirs', async () => {
  const { store } = network();
  for (const formnetRange of ['0.0.0.0/0', '10.128.0.0/9', '10.129.0.0/16', '192.168.1.0/24', '10.128.5.0/24']) {
    assert.throws(
      () => store.author(mallory, 'node.register', { ...nodeBody(66), formnetRange }),
      refused('STATE_OP_INVALID', /formnetRange/),
      formnetRange,
    );
    assert.throws(
      () => store.author(admin, 'node.admit', { node: mallory.publicKey, formnetRange }),
      refused('STATE_OP_INVALID', /formnetRange/),
      formnetRange,
    );
  }
  // The API refuses an admit overlapping another admitted node's range.
  const app = await stateApi(store);
  const overlapping = createOp(admin, 'node.admit', { node: otherNode.publicKey, formnetRange: '10.129.1.0/24' }, [
    ...store.heads(),
    networkView(store).genesis as string,
  ]);
  const r = await app.inject({ method: 'POST', url: '/ops', payload: overlapping });
  assert.equal(r.statusCode, 409);
  assert.match(r.json().error.message, /overlaps/);
  await app.close();
  // Should one arrive anyway (concurrent admits by two admins), both lose routing, and it says so.
  store.submit(overlapping);
  store.author(otherNode, 'node.register', { ...nodeBody(2), formnetRange: '10.129.1.0/24' });
  const v = store.views();
  assert.deepEqual(
    v.nodes.map((n) => n.formnetRange),
    ['', ''],
  );
  assert.ok(v.conflicts.some((c) => c.kind === 'formnetRange' && c.key === '10.129.1.0/24' && c.parties.length === 2));

  // formnet.peer: allowedIps inside formnet, endpoints host:port.
  for (const allowedIps of [['0.0.0.0/0'], ['192.168.0.0/16']]) {
    assert.throws(
      () => store.author(mallory, 'formnet.peer', { wgPublicKey: generateWireGuardKeyPair().publicKey, allowedIps }),
      refused('STATE_OP_INVALID', /allowedIps/),
    );
  }
  for (const endpoint of ['nope', 'host:0', 'host:99999', '1.2.3.4', '[::1]', 'a b:1', 'bad_host!:51820']) {
    assert.throws(
      () =>
        store.author(mallory, 'formnet.peer', {
          wgPublicKey: generateWireGuardKeyPair().publicKey,
          endpoint,
          allowedIps: [],
        }),
      refused('STATE_OP_INVALID', /endpoint/),
      endpoint,
    );
  }
  assert.throws(
    () => store.author(honestNode, 'node.update', { endpoint: 'bad host:1' }),
    refused('STATE_OP_INVALID', /endpoint/),
  );
  for (const endpoint of ['1.2.3.4:51820', '[fe80::1]:51820', 'node-1.example.com:51820']) {
    store.author(victim, 'formnet.peer', {
      wgPublicKey: generateWireGuardKeyPair().publicKey,
      endpoint,
      allowedIps: [],
    });
  }
  store.close();
});

test('attack 4: a peer routes only what it holds; a reused WireGuard key loses and is flagged', () => {
  const { store } = network();
  const dev = key(30);
  const wgDev = generateWireGuardKeyPair().publicKey;
  store.author(honestNode, 'formnet.allocate', { address: '10.128.40.7', peer: dev.publicKey, kind: 'developer' });
  store.author(dev, 'formnet.peer', { wgPublicKey: wgDev, allowedIps: ['10.128.40.7/32', '10.129.1.0/24'] });
  let peer = store.views().formnetPeers.find((p) => p.publicKey === dev.publicKey);
  assert.deepEqual(peer?.allowedIps, ['10.128.40.7/32'], "the node's range is not the developer's to route");
  // A stranger copying the developer's WireGuard key: neither gets it (DoS-able, never hijackable).
  store.author(honestNode, 'formnet.allocate', { address: '10.128.40.8', peer: mallory.publicKey, kind: 'developer' });
  store.author(mallory, 'formnet.peer', { wgPublicKey: wgDev, allowedIps: [] });
  const v = store.views();
  peer = v.formnetPeers.find((p) => p.publicKey === mallory.publicKey);
  assert.equal(peer, undefined);
  assert.ok(v.conflicts.some((c) => c.kind === 'wgPublicKey' && c.key === wgDev));
  store.close();
});

test('attack 5: names cannot be squatted by choosing deps or ts', async () => {
  const { store, id } = network();
  // Mallory creates an instance with the victim's name, deps [] and an early ts.
  const t = 1;
  const squat = createOp(
    mallory,
    'instance.create',
    { ...instanceBody('web'), id: instanceIdOf(mallory.publicKey, 'web', t) },
    [],
    t,
  );
  // The API refuses a name another owner holds.
  const app = await stateApi(store);
  const r = await app.inject({ method: 'POST', url: '/ops', payload: squat });
  assert.equal(r.statusCode, 409);
  assert.match(r.json().error.message, /name web/);
  await app.close();
  // Arriving by gossip anyway: the short name is withheld (contested), never moved; owner-qualified names resolve.
  store.submit(squat);
  const dns = store.views().dns;
  const short = dns.find((d) => d.name === 'web.dev.formation.local');
  assert.ok(short === undefined || short.instanceId === id, 'the short name never goes to the squatter');
  const qualified = dns.find((d) => d.name === `web.${victim.address.slice(2)}.dev.formation.local`);
  assert.equal(qualified?.instanceId, id);
  assert.ok(store.views().conflicts.some((c) => c.kind === 'name' && c.key === 'web'));

  // Explicit records cannot take a name under the derived domain, nor move a name another owner holds.
  store.author(mallory, 'dns.record', { name: 'web.dev.formation.local', addresses: ['10.128.9.9'] });
  assert.notEqual(store.views().dns.find((d) => d.name === 'web.dev.formation.local')?.owner, mallory.publicKey);
  store.author(victim, 'dns.record', { name: 'shop.example', addresses: ['10.128.9.1'] });
  store.submit(createOp(mallory, 'dns.record', { name: 'shop.example', addresses: ['10.128.9.9'] }, [], 1));
  const shop = store.views().dns.find((d) => d.name === 'shop.example');
  assert.ok(shop === undefined || shop.owner === victim.publicKey);

  // Formpacks: each owner's publish is its own; the victim's instance resolves to the victim's.
  store.author(victim, 'formpack.publish', {
    id: FORMPACK_ID,
    name: 'web',
    owner: victim.address,
    sha256s: { disk: 'a1'.repeat(32) },
    size: 1,
  });
  store.submit(
    createOp(
      mallory,
      'formpack.publish',
      { id: FORMPACK_ID, name: 'web', owner: mallory.address, sha256s: { disk: 'ee'.repeat(32) }, size: 1 },
      [],
      1,
    ),
  );
  const inst = store.views().instances.find((i) => i.id === id);
  assert.deepEqual(inst?.formpack?.sha256s, { disk: 'a1'.repeat(32) });
  assert.equal(store.views().formpacks.filter((p) => p.id === FORMPACK_ID).length, 2);

  // Addresses: a stranger cannot allocate; a node allocates instance addresses only inside its own range.
  store.author(honestNode, 'formnet.allocate', { address: '10.129.1.2', peer: id, kind: 'instance' });
  assert.throws(
    () => store.author(mallory, 'formnet.allocate', { address: '10.128.40.7', peer: mallory.publicKey, kind: 'node' }),
    refused('STATE_OP_FORBIDDEN', /formnet\.allocate/),
  );
  store.author(admin, 'node.admit', { node: otherNode.publicKey, formnetRange: '10.129.2.0/24' });
  const otherReg = store.author(otherNode, 'node.register', { ...nodeBody(2), formnetRange: '10.129.2.0/24' });
  const steal = createOp(
    otherNode,
    'formnet.allocate',
    { address: '10.129.1.2', peer: id, kind: 'instance' },
    [otherReg.hash],
    1,
  );
  store.submit(steal);
  const alloc = store.views().allocations.find((a) => a.address === '10.129.1.2');
  assert.equal(alloc?.allocatedBy, honestNode.publicKey, 'only the holder of a range allocates inside it');
  store.close();
});

test('attack 6: delegations have a maximum lifetime and can be revoked', async () => {
  const { store, id, create } = network();
  const session = key(40);
  const now = Date.now();
  const forever = createDelegation(victim, session.publicKey, now + 10 * 365 * 86400_000, now);
  assert.throws(
    () => store.author(delegatedKey(session, forever), 'instance.update', { instanceId: id, replicas: 2 }),
    refused('STATE_OP_FORBIDDEN', /lasts longer/),
  );
  // The old shape (no issuedAt) is refused with a clear reason.
  const { issuedAt: _drop, ...old } = createDelegation(victim, session.publicKey, now + 3600_000, now);
  assert.throws(
    () =>
      store.submit(
        createOp(session, 'instance.update', { instanceId: id, replicas: 2, onBehalfOf: old }, [create.hash]),
      ),
    refused('STATE_OP_FORBIDDEN', /issuedAt/),
  );
  // Dated before it was issued.
  const d = createDelegation(victim, session.publicKey, now + 3600_000, now);
  assert.throws(
    () =>
      store.submit(
        createOp(
          session,
          'instance.update',
          { instanceId: id, replicas: 2, onBehalfOf: d },
          [create.hash],
          now - 3_600_000,
        ),
      ),
    refused('STATE_OP_FORBIDDEN', /before it was issued/),
  );
  const acting = delegatedKey(session, d);
  store.author(acting, 'instance.update', { instanceId: id, replicas: 2 }, now + 1);
  assert.equal(store.views().instances[0]?.replicas, 2);
  // Revoked: later delegated ops do not count, and the API refuses new ones.
  store.author(victim, 'delegation.revoke', { delegate: session.publicKey }, now + 10);
  const late = createOp(
    session,
    'instance.update',
    { instanceId: id, replicas: 5, onBehalfOf: d },
    [create.hash],
    now + 20,
  );
  const app = await stateApi(store);
  const r = await app.inject({ method: 'POST', url: '/ops', payload: late });
  assert.equal(r.statusCode, 403);
  assert.match(r.json().error.message, /revoked/);
  await app.close();
  store.submit(late); // gossip: accepted (it may be cited) but never counts
  assert.equal(store.views().instances[0]?.replicas, 2);
  // A replica that gets the late op before the revocation drops it when the revocation arrives.
  const ops = store.opsSince([], 1000);
  const revoke = ops.find((o) => o.kind === 'delegation.revoke') as Op;
  const other = memStore();
  other.applyBatch(ops.filter((o) => o !== revoke));
  assert.equal(other.views().instances[0]?.replicas, 5, 'counted while not revoked');
  other.applyBatch([revoke]);
  assert.equal(other.views().instances[0]?.replicas, 2);
  assert.equal(other.digest(), store.digest());
  other.close();
  // Only the owner revokes for itself: Mallory's revoke names only Mallory's own delegations.
  store.author(mallory, 'delegation.revoke', { delegate: key(41).publicKey });
  store.close();
});

test('attack 7: a big unsigned batch is capped and rate limited per address', async () => {
  const store = memStore();
  const app = await stateApi(store, { maxBatch: 100, rateLimit: { opsPerSecond: 10, burst: 150 } });
  const ops: Op[] = Array.from({ length: 101 }, (_, i) => createOp(key(500 + i), 'account.update', { name: `n${i}` }));
  let r = await app.inject({ method: 'POST', url: '/ops/batch', payload: { ops } });
  assert.equal(r.statusCode, 422);
  assert.match(r.json().error.message, /at most 100/);
  assert.equal(store.size, 0, 'refused before any signature is checked');
  r = await app.inject({ method: 'POST', url: '/ops/batch', payload: { ops: ops.slice(0, 100) } });
  assert.equal(r.statusCode, 200);
  r = await app.inject({ method: 'POST', url: '/ops/batch', payload: { ops: ops.slice(0, 100) } });
  assert.equal(r.statusCode, 429);
  assert.equal(r.json().error.code, 'RATE_LIMITED');
  await app.close();
  store.close();
});

test('attack 7: per-account quotas on instances and replicas, decided in the views', () => {
  const store = memStore();
  store.author(admin, 'network.init', {
    name: 'q',
    admission: 'open',
    admins: [admin.publicKey],
    quotas: { instancesPerAccount: 3, replicasPerAccount: 4 },
  });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    ids.push(store.author(mallory, 'instance.create', instanceBody(`i${i}`), 1000 + i).body.id as string);
  }
  // The API refuses a fourth; arriving by gossip anyway, it and later ones are over quota.
  assert.throws(() => store.author(mallory, 'instance.create', instanceBody('i3')), refused('CONFLICT', /quota/));
  for (let i = 3; i < 5; i++) {
    const t = 1000 + i;
    const body = { ...instanceBody(`i${i}`), id: instanceIdOf(mallory.publicKey, `i${i}`, t) };
    ids.push(store.submit(createOp(mallory, 'instance.create', body, store.heads(), t)).hash && (body.id as string));
  }
  const over = (id: string) => store.views().instances.find((x) => x.id === id)?.overQuota;
  assert.deepEqual(ids.map(over), [false, false, false, true, true]);
  // Scaling one up past the replica quota puts that one (and later ones) over.
  store.author(mallory, 'instance.update', { instanceId: ids[1] as string, replicas: 3 });
  assert.deepEqual(ids.map(over), [false, false, true, true, true]);
  // Another account is unaffected.
  const mine = store.author(victim, 'instance.create', instanceBody('web')).body.id as string;
  assert.equal(over(mine), false);
  store.close();
});
