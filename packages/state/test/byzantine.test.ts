import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sha256Hex, sign } from '@formation/identity';
import { isFormError } from '@formation/interface';
import { createOp, encodeOp, instanceIdOf, MAX_OP_BYTES, type Op } from '../src/index.ts';
import { claimRunning, instanceBody, key, memStore, nodeBody } from './helpers.ts';

const dev = key(10);
const mallory = key(66);
const nodeA = key(20);
const nodeB = key(21);

function rejectedCode(store: ReturnType<typeof memStore>, op: unknown): string | undefined {
  const r = store.applyBatch([op]);
  return r.rejected[0]?.code;
}

test('forged signature is rejected with AUTH_BAD_SIGNATURE and not stored', () => {
  const s = memStore();
  const op = createOp(dev, 'account.update', { name: 'dev' });
  const forged = { ...op, sig: sign(mallory.privateKey, encodeOp(op)) };
  assert.equal(rejectedCode(s, forged), 'AUTH_BAD_SIGNATURE');
  assert.equal(s.size, 0);
  assert.equal(s.countOnDisk(), 0);
});

test('valid signature over a tampered body is rejected', () => {
  const s = memStore();
  const op = createOp(dev, 'account.update', { name: 'dev' });
  const { hash: _drop, ...noHash } = op;
  assert.equal(rejectedCode(s, { ...noHash, body: { name: 'evil' } }), 'AUTH_BAD_SIGNATURE');
  // with the original hash still attached, the mismatch is caught first
  assert.equal(rejectedCode(s, { ...op, body: { name: 'evil' } }), 'STATE_OP_INVALID');
  assert.equal(rejectedCode(s, { ...op, ts: op.ts + 1, hash: undefined }), 'AUTH_BAD_SIGNATURE');
  assert.equal(s.size, 0);
});

test('an op claiming another author (signed by someone else) is rejected', () => {
  const s = memStore();
  const base = createOp(mallory, 'node.heartbeat', { status: 'healthy' });
  const claimed = { ...base, author: nodeA.publicKey, hash: undefined };
  assert.equal(rejectedCode(s, claimed), 'AUTH_BAD_SIGNATURE');
  // re-signed by mallory but still naming nodeA as author: still not nodeA's signature
  const unsigned = {
    v: 1 as const,
    author: nodeA.publicKey,
    deps: [],
    kind: 'node.heartbeat' as const,
    body: { status: 'healthy' },
    ts: 1,
  };
  const resigned = { ...unsigned, sig: sign(mallory.privateKey, encodeOp(unsigned)) };
  assert.equal(rejectedCode(s, resigned), 'AUTH_BAD_SIGNATURE');
  assert.equal(s.views().nodes.length, 0);
});

test('owner check: only the owner may update or delete an instance; forged formpack owner refused', () => {
  const s = memStore();
  const create = s.author(dev, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  // mallory cites the create, as required, but is not the owner
  const upd = createOp(mallory, 'instance.update', { instanceId: id, replicas: 5 }, [...s.heads(), create.hash]);
  assert.equal(rejectedCode(s, upd), 'STATE_OP_FORBIDDEN');
  s.author(nodeA, 'node.heartbeat', { status: 'healthy' }); // heads no longer include the create
  const del = createOp(mallory, 'instance.delete', { instanceId: id }, s.heads());
  assert.equal(rejectedCode(s, del), 'STATE_OP_INVALID', 'without citing the create it is invalid');
  const del2 = createOp(mallory, 'instance.delete', { instanceId: id }, [create.hash]);
  assert.equal(rejectedCode(s, del2), 'STATE_OP_FORBIDDEN');
  // an id not bound to its author cannot be squatted
  const squat = createOp(mallory, 'instance.create', { ...instanceBody('web'), id }, []);
  assert.equal(rejectedCode(s, squat), 'STATE_OP_INVALID');
  const commit = createOp(mallory, 'instance.commit', { instanceId: id, revision: 9, hash: 'cd'.repeat(32) }, [
    create.hash,
  ]);
  assert.equal(rejectedCode(s, commit), 'STATE_OP_FORBIDDEN');
  const pub = createOp(mallory, 'formpack.publish', {
    id: 'ef'.repeat(32),
    name: 'x',
    owner: dev.address,
    sha256s: {},
    size: 1,
  });
  assert.equal(rejectedCode(s, pub), 'STATE_OP_FORBIDDEN');
  // the owner can
  s.author(dev, 'instance.update', { instanceId: id, replicas: 2 });
  const inst = s.views().instances[0];
  assert.equal(inst?.replicas, 2);
  assert.equal(inst?.owner, dev.publicKey);
  assert.equal(s.size, 3);
});

test('a node may report only on itself', () => {
  const s = memStore();
  s.author(nodeA, 'node.register', nodeBody(1));
  const create = s.author(dev, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  const claimForB = createOp(nodeA, 'instance.claim', { instanceId: id, node: nodeB.publicKey }, s.heads());
  assert.equal(rejectedCode(s, claimForB), 'STATE_OP_FORBIDDEN');
  const statusForB = createOp(
    nodeA,
    'instance.status',
    { instanceId: id, node: nodeB.publicKey, state: 'failed', revision: 0 },
    s.heads(),
  );
  assert.equal(rejectedCode(s, statusForB), 'STATE_OP_FORBIDDEN');
  const allocForDev = createOp(mallory, 'formnet.allocate', {
    address: '10.128.0.9',
    peer: dev.publicKey,
    kind: 'developer',
  });
  assert.equal(rejectedCode(s, allocForDev), 'STATE_OP_FORBIDDEN', 'only nodes allocate');
  // node A reporting on itself is fine, and a registered node may allocate for a developer
  claimRunning(s, nodeA, id, '10.129.1.5');
  s.author(nodeA, 'formnet.allocate', { address: '10.128.0.9', peer: dev.publicKey, kind: 'developer' });
  let v = s.views();
  assert.equal(v.instances[0]?.replicaSet[0]?.state, 'running');
  assert.equal(v.allocations[0]?.peer, dev.publicKey);
  assert.ok(v.dns.some((d) => d.name === 'web.dev.formation.local' && d.addresses[0] === '10.129.1.5'));
  // An address outside its own slice (someone else's) is not the instance's: DNS never points there.
  s.author(
    nodeA,
    'instance.status',
    {
      instanceId: id,
      node: nodeA.publicKey,
      state: 'running',
      formnetIp: '10.128.0.9',
      revision: 0,
    },
    Date.now() + 1000,
  );
  v = s.views();
  assert.equal(v.instances[0]?.replicaSet[0]?.formnetIp, null);
  assert.deepEqual(v.dns.find((d) => d.name === 'web.dev.formation.local')?.addresses, []);
});

test('equivocation: two conflicting ops by one author with the same deps converge everywhere', () => {
  const base = memStore();
  const regA = base.author(nodeA, 'node.register', nodeBody(1));
  const regB = base.author(nodeB, 'node.register', nodeBody(2));
  const create = base.author(dev, 'instance.create', instanceBody('web'));
  const id = create.body.id as string;
  const heads = base.heads();
  const ts = Date.now();
  const u1 = createOp(dev, 'instance.update', { instanceId: id, replicas: 3 }, heads, ts);
  const u2 = createOp(dev, 'instance.update', { instanceId: id, replicas: 7 }, heads, ts);
  const a1 = createOp(
    nodeA,
    'formnet.allocate',
    { address: '10.128.1.1', peer: nodeA.publicKey, kind: 'node' },
    [...heads, regA.hash],
    ts,
  );
  const a2 = createOp(
    nodeB,
    'formnet.allocate',
    { address: '10.128.1.1', peer: nodeB.publicKey, kind: 'node' },
    [...heads, regB.hash],
    ts,
  );
  const r1 = memStore();
  const r2 = memStore();
  r1.applyBatch([regA, regB, create, u1, a1, u2, a2]);
  r2.applyBatch([a2, u2, create, a1, u1, regB, regA].reverse());
  r2.applyBatch([u2, u1]); // replays
  assert.equal(r1.size, 7);
  assert.equal(r1.digest(), r2.digest());
  const winner = u1.hash > u2.hash ? 3 : 7; // same ts: higher hash wins
  assert.equal(r1.views().instances[0]?.replicas, winner);
  // Two nodes gave the address to two peers: neither gets it (choosing deps or ts cannot win it;
  // before issue 16 the lower (depth, hash) won), same on both replicas, and it says so.
  assert.equal(r1.views().allocations.length, 0);
  assert.deepEqual(
    r1.views().conflicts.map((c) => [c.kind, c.key]),
    [['address', '10.128.1.1']],
  );
  assert.equal(r1.freeAddress('10.128.1.0/30'), '10.128.1.2', 'a contested address is not offered again');
});

test('delete wins over a concurrent update', () => {
  const s = memStore();
  const create = s.author(dev, 'instance.create', instanceBody('db'));
  const id = create.body.id as string;
  const heads = s.heads();
  const del = createOp(dev, 'instance.delete', { instanceId: id }, heads, 1);
  const upd = createOp(dev, 'instance.update', { instanceId: id, replicas: 2 }, heads, 2);
  s.applyBatch([upd, del]);
  const i = s.views().instances[0];
  assert.equal(i?.deleted, true);
  assert.ok(!s.views().dns.some((d) => d.instanceId === id), 'deleted instances have no DNS names');
});

test('replayed ops are idempotent', () => {
  const s = memStore();
  const op = s.author(nodeA, 'node.register', nodeBody(1));
  const d = s.digest();
  const r = s.applyBatch([op, op, { ...op }]);
  assert.deepEqual(r.accepted, []);
  assert.equal(r.duplicates.length, 3);
  assert.equal(s.submit(op).status, 'duplicate');
  assert.equal(s.size, 1);
  assert.equal(s.countOnDisk(), 1);
  assert.equal(s.digest(), d);
});

test('missing deps wait in the buffer and apply when the deps arrive; self/cyclic/malformed deps never apply', () => {
  const s = memStore();
  const a = createOp(dev, 'account.update', { name: 'a' }, []);
  const b = createOp(dev, 'account.update', { name: 'b' }, [a.hash]);
  const c = createOp(dev, 'account.update', { name: 'c' }, [b.hash]);
  let r = s.applyBatch([c, b]);
  assert.deepEqual(r.pending.sort(), [b.hash, c.hash].sort());
  assert.equal(s.size, 0);
  const seen: string[] = [];
  s.onAccepted((op) => seen.push(op.hash));
  r = s.applyBatch([a]);
  assert.deepEqual(r.accepted, [a.hash, b.hash, c.hash]);
  assert.deepEqual(seen, [a.hash, b.hash, c.hash]);
  assert.equal(s.pendingStats().ops, 0);

  // self-reference: claim a hash and name it as a dep; the real hash differs, so it is caught either way
  const unsigned = {
    v: 1 as const,
    author: dev.publicKey,
    kind: 'account.update' as const,
    body: { name: 'x' },
    ts: 5,
  };
  const fakeSelf = 'aa'.repeat(32);
  const selfOp = { ...unsigned, deps: [fakeSelf], hash: fakeSelf };
  const enc = encodeOp(selfOp);
  assert.equal(rejectedCode(s, { ...selfOp, sig: sign(dev.privateKey, enc) }), 'STATE_OP_INVALID');
  // cycle: x names y's claimed hash and y names x's; neither can ever be satisfied
  const hx = sha256Hex('x');
  const hy = sha256Hex('y');
  const x = createOp(dev, 'account.update', { name: 'x' }, [hy]);
  const y = createOp(dev, 'account.update', { name: 'y' }, [hx]);
  assert.equal(rejectedCode(s, { ...x, hash: hx }), 'STATE_OP_INVALID', 'claimed hash must match');
  r = s.applyBatch([x, y]);
  assert.equal(r.accepted.length, 0);
  assert.equal(r.pending.length, 2);
  // malformed deps
  assert.equal(rejectedCode(s, createOp(dev, 'account.update', { name: 'q' }, ['nothex'])), 'STATE_OP_INVALID');
  const unsorted = { ...createOp(dev, 'account.update', { name: 'q' }, [hx, hy]), hash: undefined };
  unsorted.deps = [...unsorted.deps].reverse();
  assert.equal(rejectedCode(s, unsorted), 'STATE_OP_INVALID');
  const dup = { ...createOp(dev, 'account.update', { name: 'q' }, [hx]), hash: undefined };
  dup.deps = [hx, hx];
  assert.equal(rejectedCode(s, dup), 'STATE_OP_INVALID');
  assert.equal(s.size, 3);
});

test('oversize, malformed and unknown-kind ops are rejected with clear reasons', () => {
  const s = memStore();
  const bad = (o: unknown) => s.applyBatch([o]).rejected[0];
  const big = createOp(dev, 'account.update', { name: 'x'.repeat(60) });
  assert.equal(bad({ ...big, body: { name: 'x'.repeat(MAX_OP_BYTES) }, hash: undefined })?.code, 'STATE_OP_INVALID');
  assert.match(bad({ ...big, body: { name: 'x'.repeat(MAX_OP_BYTES) }, hash: undefined })?.reason ?? '', /limit/);
  assert.match(bad(createOp(dev, 'account.update', { name: 'x'.repeat(65) }))?.reason ?? '', /account\.update body/);
  assert.match(bad(createOp(dev, 'node.heartbeat', { status: 'healthy', extra: 1 }))?.reason ?? '', /body/);
  const reg = createOp(dev, 'node.register', nodeBody(1));
  const floatCap = {
    ...reg,
    hash: undefined,
    body: { ...nodeBody(1), capacity: { vcpu: 1.5, memMiB: 1, diskGiB: 1 } },
  };
  assert.match(bad(floatCap)?.reason ?? '', /canonical|body/);
  const zeroCap = { ...reg, hash: undefined, body: { ...nodeBody(1), capacity: { vcpu: 0, memMiB: 1, diskGiB: 1 } } };
  assert.match(bad(zeroCap)?.reason ?? '', /node\.register body/);
  assert.match(bad({ ...big, kind: 'root.takeover', hash: undefined })?.reason ?? '', /unknown kind/);
  assert.match(bad({ ...big, extra: true })?.reason ?? '', /unknown field/);
  assert.match(bad({ ...big, v: 2 })?.reason ?? '', /v must be 1/);
  assert.match(bad({ ...big, ts: 1.5 })?.reason ?? '', /ts/);
  assert.match(bad({ ...big, author: 'me' })?.reason ?? '', /author/);
  assert.match(bad(null)?.reason ?? '', /object/);
  assert.match(bad([1, 2])?.reason ?? '', /object/);
  assert.match(bad({ ...big, body: { name: 1.25 }, hash: undefined })?.reason ?? '', /canonical/);
  assert.match(
    bad(createOp(nodeA, 'formnet.allocate', { address: '192.168.1.1', peer: nodeA.publicKey, kind: 'node' }))?.reason ??
      '',
    /outside/,
  );
  assert.equal(s.size, 0);
  // submit() turns a rejection into a FormError with the code
  try {
    s.submit({ ...big, kind: 'nope', hash: undefined });
    assert.fail('should throw');
  } catch (err) {
    assert.ok(isFormError(err));
    assert.equal((err as { code: string }).code, 'STATE_OP_INVALID');
  }
});

test('a flood of ops with missing deps stays within the pending bounds', () => {
  const s = memStore({ pendingMaxOps: 50, pendingMaxBytes: 20_000 });
  const orphans: Op[] = [];
  for (let i = 0; i < 400; i++) {
    orphans.push(createOp(mallory, 'node.heartbeat', { status: 'healthy' }, [sha256Hex(`missing-${i}`)], i));
  }
  for (let i = 0; i < orphans.length; i += 100) s.applyBatch(orphans.slice(i, i + 100));
  const st = s.pendingStats();
  assert.ok(st.ops <= 50, `pending ops ${st.ops}`);
  assert.ok(st.bytes <= 20_000, `pending bytes ${st.bytes}`);
  assert.ok(st.evicted >= 350);
  assert.equal(s.size, 0);
  // the store still works
  s.author(dev, 'account.update', { name: 'still here' });
  assert.equal(s.size, 1);
});

test('instance ids are bound to their owner', () => {
  const s = memStore();
  const op = s.author(dev, 'instance.create', instanceBody('api'));
  assert.equal(op.body.id, instanceIdOf(dev.publicKey, 'api', op.ts));
});
