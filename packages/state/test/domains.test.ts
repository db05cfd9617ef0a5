import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { createOp, DOMAIN_CLAIMS_PER_ACCOUNT, domainTokenOf, type StateStore } from '../src/index.ts';
import { instanceBody, key, memStore, nodeBody } from './helpers.ts';

/**
 * Custom domains (issue 19): an owner claims a domain for an instance with a token, admitted nodes
 * vouch for the DNS proof (dns.verified), a quorum makes it verified. Every refusal has its test.
 */

const admin = key(1);
const owner = key(10);
const nodeA = key(20);
const nodeB = key(21);
const mallory = key(66);
const T0 = Date.now();

const refused = (code: string, re: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === code && re.test(e.message);

/** An admins network with `nodes` admitted (A, then B) and the owner's instance `web`. */
function network(nodes = 2, store: StateStore = memStore()) {
  store.author(admin, 'network.init', { name: 't', admission: 'admins', admins: [admin.publicKey] });
  for (const [i, n] of [nodeA, nodeB].slice(0, nodes).entries()) {
    store.author(admin, 'node.admit', { node: n.publicKey, formnetRange: `10.129.${i + 1}.0/24` });
    store.author(n, 'node.register', { ...nodeBody(i + 1), formnetRange: `10.129.${i + 1}.0/24` });
  }
  const id = store.author(owner, 'instance.create', instanceBody('web')).body.id as string;
  return { store, id };
}

const createdBy = (store: StateStore, id: string) =>
  store.views().instances.find((i) => i.id === id)?.createdBy as string;
const domain = (store: StateStore, name: string, who = owner) =>
  store.views().domains.find((d) => d.name === name && d.owner === who.publicKey);

test('a claim is pending until a quorum of admitted nodes vouches (2 of them here)', () => {
  const { store, id } = network(2);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending');
  assert.equal(domain(store, 'shop.example.com')?.token, claim.body.token);
  assert.equal(claim.body.token, domainTokenOf(owner.publicKey, 'shop.example.com', claim.ts));
  store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending', 'one node is not enough in a 2-node network');
  store.author(nodeB, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'cname' });
  const d = domain(store, 'shop.example.com');
  assert.equal(d?.state, 'verified');
  assert.deepEqual(d?.verifiedBy.map((v) => v.method).sort(), ['cname', 'txt']);
  assert.equal(d?.instanceId, id);
});

test('in a one-node network its single admitted node is the quorum', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  assert.equal(domain(store, 'shop.example.com')?.state, 'verified');
});

test('refused: a claim for an instance by someone who does not own it', () => {
  const { store, id } = network(1);
  assert.throws(
    () => store.author(mallory, 'dns.claim', { name: 'evil.example.com', instanceId: id }),
    refused('STATE_OP_FORBIDDEN', /only the owner of instance/),
  );
  const token = domainTokenOf(mallory.publicKey, 'evil.example.com', T0);
  const noDeps = createOp(mallory, 'dns.claim', { name: 'evil.example.com', instanceId: id, token }, [], T0);
  assert.throws(() => store.submit(noDeps), refused('STATE_OP_INVALID', /deps must include the instance.create/));
});

test('refused: a claim in the network domain, a bad token, extra fields', () => {
  const { store, id } = network(1);
  assert.throws(
    () => store.author(owner, 'dns.claim', { name: 'web.dev.formation.local', instanceId: id }),
    refused('STATE_OP_INVALID', /network's domain/),
  );
  assert.throws(
    () => store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id, token: 'x' }),
    refused('STATE_OP_INVALID', /token/),
  );
  assert.throws(
    () => store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id, extra: 1 }),
    refused('STATE_OP_INVALID', /./),
  );
  // Submitted directly (past the API check), a claim in the network domain is still never listed.
  const c = createdBy(store, id);
  store.submit(
    createOp(
      owner,
      'dns.claim',
      {
        name: 'x.dev.formation.local',
        instanceId: id,
        token: domainTokenOf(owner.publicKey, 'x.dev.formation.local', T0),
      },
      [...store.heads(), c],
      T0,
    ),
  );
  assert.equal(domain(store, 'x.dev.formation.local'), undefined);
});

test('refused: a verification by a key that is not a node, or citing no claim / another name', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  assert.throws(
    () => store.author(mallory, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' }),
    refused('STATE_OP_FORBIDDEN', /only a node/),
  );
  const reg = store.views().nodes.find((n) => n.id === nodeA.publicKey)?.registeredBy as string;
  const noClaim = createOp(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' }, [
    reg,
  ]);
  assert.throws(() => store.submit(noClaim), refused('STATE_OP_INVALID', /deps must include the dns.claim/));
  assert.throws(
    () => store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'other.example.com', method: 'txt' }),
    refused('STATE_OP_INVALID', /is for shop.example.com, not other.example.com/),
  );
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending');
});

test('a registered but unadmitted node vouches for nothing', () => {
  const { store, id } = network(1);
  store.author(mallory, 'node.register', { ...nodeBody(66), formnetRange: '10.129.66.0/24' });
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  store.author(mallory, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending');
  assert.deepEqual(domain(store, 'shop.example.com')?.verifiedBy, []);
});

test('a verified domain is refused to another owner; forced through, both verified claims lose it', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  const mid = store.author(mallory, 'instance.create', instanceBody('mweb')).body.id as string;
  assert.throws(
    () => store.author(mallory, 'dns.claim', { name: 'shop.example.com', instanceId: mid }),
    refused('CONFLICT', /another owner holds it/),
  );
  // A lying admitted node vouches for Mallory's claim submitted past the API: contested, nobody routes it.
  const mc = createdBy(store, mid);
  const mToken = domainTokenOf(mallory.publicKey, 'shop.example.com', T0);
  const mClaim = createOp(
    mallory,
    'dns.claim',
    { name: 'shop.example.com', instanceId: mid, token: mToken },
    [...store.heads(), mc],
    T0,
  );
  store.submit(mClaim);
  store.author(nodeA, 'dns.verified', { claim: mClaim.hash, name: 'shop.example.com', method: 'txt' });
  assert.equal(domain(store, 'shop.example.com')?.state, 'contested');
  assert.equal(domain(store, 'shop.example.com', mallory)?.state, 'contested');
  assert.ok(store.views().conflicts.some((c) => c.kind === 'domain' && c.key === 'shop.example.com'));
});

test('attack: copying the owner’s token to make their TXT prove a claim of your own is refused', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  const mid = store.author(mallory, 'instance.create', instanceBody('mweb')).body.id as string;
  // Mallory's own claim must carry domainTokenOf(mallory, …): the owner's token does not fit it.
  assert.throws(
    () => store.author(mallory, 'dns.claim', { name: 'shop.example.com', instanceId: mid, token: claim.body.token }),
    refused('STATE_OP_INVALID', /token must be domainTokenOf/),
  );
  const copied = createOp(
    mallory,
    'dns.claim',
    { name: 'shop.example.com', instanceId: mid, token: claim.body.token },
    [...store.heads(), createdBy(store, mid)],
    claim.ts,
  );
  assert.throws(() => store.submit(copied), refused('STATE_OP_INVALID', /token must be domainTokenOf/));
  assert.equal(store.views().domains.length, 1);
});

test('claims per account are capped: the API refuses one more, and views count only the first ones', () => {
  const { store, id } = network(1);
  for (let i = 0; i < DOMAIN_CLAIMS_PER_ACCOUNT; i++) {
    store.author(owner, 'dns.claim', { name: `d${i}.example.com`, instanceId: id }, T0 + i);
  }
  assert.throws(
    () => store.author(owner, 'dns.claim', { name: 'one-more.example.com', instanceId: id }),
    refused('CONFLICT', /domain claims, the limit/),
  );
  // Re-claiming a name already held does not count twice.
  store.author(owner, 'dns.claim', { name: 'd0.example.com', instanceId: id }, T0 + 100);
  // Forced past the API (gossip), an extra claim is simply not listed.
  const name = 'late.example.com';
  const ts = T0 + 200;
  const late = createOp(
    owner,
    'dns.claim',
    { name, instanceId: id, token: domainTokenOf(owner.publicKey, name, ts) },
    [...store.heads(), createdBy(store, id)],
    ts,
  );
  store.submit(late);
  assert.equal(store.views().domains.length, DOMAIN_CLAIMS_PER_ACCOUNT);
  assert.equal(domain(store, name), undefined);
});

test('a name held as another owner’s explicit record cannot be claimed', () => {
  const { store, id } = network(1);
  store.author(mallory, 'dns.record', { name: 'taken.example.com', addresses: ['10.129.1.9'] });
  assert.throws(
    () => store.author(owner, 'dns.claim', { name: 'taken.example.com', instanceId: id }),
    refused('CONFLICT', /another owner holds it/),
  );
});

test('release, and deleting the instance, end the claim; a later claim needs verifying again', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  store.author(owner, 'dns.release', { name: 'shop.example.com' }, Date.now() + 1);
  assert.equal(domain(store, 'shop.example.com'), undefined);
  store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id }, Date.now() + 2);
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending', 'a new claim has its own verifications');
  store.author(owner, 'instance.delete', { instanceId: id });
  assert.equal(domain(store, 'shop.example.com'), undefined);
});

test('views are the same whatever the delivery order of claim, verification and release ops', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  store.author(nodeA, 'dns.verified', { claim: claim.hash, name: 'shop.example.com', method: 'txt' });
  const other = memStore();
  const ops = store.opsSince([], 10_000);
  for (const op of [...ops].reverse()) other.submit(op);
  assert.equal(other.digest(), store.digest());
  assert.equal(other.views().domains[0]?.state, 'verified');
});

// Re-checks (issue 19): a node that vouched and no longer sees the proof records dns.lapsed; a node's
// latest word counts; a quorum that says "gone" (and outnumbers those still vouching) lapses the domain.
test('a verified domain lapses when a quorum of its verifiers record dns.lapsed, and comes back when they see it again', () => {
  const { store, id } = network(2);
  const t0 = Date.now();
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  const c = { claim: claim.hash, name: 'shop.example.com' };
  store.author(nodeA, 'dns.verified', { ...c, method: 'txt' });
  store.author(nodeB, 'dns.verified', { ...c, method: 'txt' });
  assert.equal(domain(store, 'shop.example.com')?.state, 'verified');
  store.author(nodeA, 'dns.lapsed', { ...c, reason: 'the resolver shows no TXT; no CNAME' }, t0 + 1000);
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending', 'one node lapsed, one vouching: below quorum');
  store.author(nodeB, 'dns.lapsed', { ...c, reason: 'the resolver shows no TXT; no CNAME' }, t0 + 1000);
  const d = domain(store, 'shop.example.com');
  assert.equal(d?.state, 'lapsed');
  assert.deepEqual(d?.verifiedBy, []);
  assert.deepEqual(
    d?.lapsedBy.map((x) => x.reason),
    ['the resolver shows no TXT; no CNAME', 'the resolver shows no TXT; no CNAME'],
  );
  // The proof is back: each node's later dns.verified is its latest word.
  store.author(nodeA, 'dns.verified', { ...c, method: 'txt' }, t0 + 2000);
  store.author(nodeB, 'dns.verified', { ...c, method: 'cname' }, t0 + 2000);
  assert.equal(domain(store, 'shop.example.com')?.state, 'verified');
});

test('attack: two nodes cannot lapse a domain the other verifiers still see; a backdated lapse does not count', () => {
  const { store, id } = network(2);
  const t0 = Date.now();
  const nodeC = key(22);
  const nodeD = key(23);
  for (const [i, n] of [nodeC, nodeD].entries()) {
    store.author(admin, 'node.admit', { node: n.publicKey, formnetRange: `10.129.${i + 3}.0/24` });
    store.author(n, 'node.register', { ...nodeBody(i + 3), formnetRange: `10.129.${i + 3}.0/24` });
  }
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  const c = { claim: claim.hash, name: 'shop.example.com' };
  for (const n of [nodeA, nodeB, nodeC]) store.author(n, 'dns.verified', { ...c, method: 'txt' }, t0 + 1000);
  // C and D collude: D never vouched, C lies. 2 "gone" against A and B still vouching: stays verified.
  store.author(nodeC, 'dns.lapsed', { ...c, reason: 'lie' }, t0 + 2000);
  store.author(nodeD, 'dns.lapsed', { ...c, reason: 'lie' }, t0 + 2000);
  assert.equal(domain(store, 'shop.example.com')?.state, 'verified');
  // A lapse dated before the node's own verification is not its latest word.
  store.author(nodeA, 'dns.lapsed', { ...c, reason: 'old' }, t0);
  assert.equal(domain(store, 'shop.example.com')?.state, 'verified');
  assert.ok(domain(store, 'shop.example.com')?.verifiedBy.some((v) => v.node === nodeA.publicKey));
});

test('refused: a dns.lapsed by a key that is not a node, for another name, or with control characters', () => {
  const { store, id } = network(1);
  const claim = store.author(owner, 'dns.claim', { name: 'shop.example.com', instanceId: id });
  assert.throws(
    () => store.author(mallory, 'dns.lapsed', { claim: claim.hash, name: 'shop.example.com', reason: 'x' }),
    refused('STATE_OP_FORBIDDEN', /dns.lapsed: only a node/),
  );
  assert.throws(
    () => store.author(nodeA, 'dns.lapsed', { claim: claim.hash, name: 'other.example.com', reason: 'x' }),
    refused('STATE_OP_INVALID', /is for shop.example.com/),
  );
  assert.throws(
    () => store.author(nodeA, 'dns.lapsed', { claim: claim.hash, name: 'shop.example.com', reason: 'a\u001b[2Jb' }),
    refused('STATE_OP_INVALID', /reason/),
  );
  assert.equal(domain(store, 'shop.example.com')?.state, 'pending');
});
