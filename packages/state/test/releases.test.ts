// Releases and replica health as signed ops (issue 20): releaseState (pure, table), and through a
// store: instance.health only from the node holding the replica, a release that fails during its
// roll-out sends the instance back to the last good one, only the owner makes releases.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addressOf } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createOp, instanceEvents, type Op, type ReleaseRecord, releaseState, UPDATE_WINDOW_MS } from '../src/index.ts';
import { key, memStore, nodeBody } from './helpers.ts';

const A = key(1).publicKey;
const B = key(2).publicKey;
const OWNER = key(9).publicKey;
const R = { vcpu: 1, memMiB: 512, diskGiB: 5 };
const rec = (release: number, formpackId: string, ts: number): ReleaseRecord => ({
  release,
  formpackId,
  resources: R,
  ts,
  actor: OWNER,
  op: String(release).repeat(64).slice(0, 64),
  rollbackOf: null,
});
const RELEASES = [rec(1, 'a'.repeat(64), 1000), rec(2, 'b'.repeat(64), 10_000), rec(3, 'c'.repeat(64), 20_000)];

describe('releaseState (pure)', () => {
  const counted = new Set([A, B]);
  const cases: Array<{
    name: string;
    latest: number;
    evidence: Array<{ release: number; node: string; ts: number; reason: string }>;
    replicas: Array<{ node: string; state: string | null; release: number | null }>;
    target: number;
    results: string[];
  }> = [
    {
      name: 'no failure: the latest is the target, rolling until every replica runs it',
      latest: 2,
      evidence: [],
      replicas: [
        { node: A, state: 'running', release: 2 },
        { node: B, state: 'running', release: 1 },
      ],
      target: 2,
      results: ['superseded', 'rolling', 'superseded'],
    },
    {
      name: 'every replica runs the latest: current',
      latest: 2,
      evidence: [],
      replicas: [
        { node: A, state: 'running', release: 2 },
        { node: B, state: 'running', release: 2 },
      ],
      target: 2,
      results: ['superseded', 'current', 'superseded'],
    },
    {
      name: 'the latest failed on a counted node: back to the newest good one',
      latest: 3,
      evidence: [{ release: 3, node: A, ts: 21_000, reason: 'entrypoint exited' }],
      replicas: [
        { node: A, state: 'failed', release: 3 },
        { node: B, state: 'running', release: 2 },
      ],
      target: 2,
      results: ['superseded', 'rolling', 'rolled-back'],
    },
    {
      name: 'two failed in a row: back past both',
      latest: 3,
      evidence: [
        { release: 3, node: A, ts: 21_000, reason: 'x' },
        { release: 2, node: B, ts: 11_000, reason: 'y' },
      ],
      replicas: [{ node: B, state: 'running', release: 1 }],
      target: 1,
      results: ['current', 'rolled-back', 'rolled-back'],
    },
    {
      name: 'a node that holds no claim cannot fail a release (a lying outsider)',
      latest: 3,
      evidence: [{ release: 3, node: OWNER, ts: 21_000, reason: 'lie' }],
      replicas: [{ node: A, state: 'running', release: 3 }],
      target: 3,
      results: ['superseded', 'superseded', 'current'],
    },
    {
      name: 'a failure long after the roll-out window does not roll a finished release back',
      latest: 3,
      evidence: [{ release: 3, node: A, ts: 20_000 + UPDATE_WINDOW_MS + 1, reason: 'disk' }],
      replicas: [{ node: A, state: 'failed', release: 3 }],
      target: 3,
      results: ['superseded', 'superseded', 'rolling'],
    },
    {
      name: 'a failure dated well before its release is not about it',
      latest: 3,
      evidence: [{ release: 3, node: A, ts: 20_000 - 6 * 60_000, reason: 'old' }],
      replicas: [{ node: A, state: 'running', release: 3 }],
      target: 3,
      results: ['superseded', 'superseded', 'current'],
    },
    {
      name: 'release 1 has nothing to go back to: failed, still the target',
      latest: 1,
      evidence: [{ release: 1, node: A, ts: 2000, reason: 'x' }],
      replicas: [{ node: A, state: 'failed', release: 1 }],
      target: 1,
      results: ['rolling', 'superseded', 'superseded'],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const s = releaseState({
        releases: RELEASES,
        latest: c.latest,
        evidence: c.evidence,
        counted,
        replicas: c.replicas,
      });
      assert.equal(s.target, c.target);
      assert.deepEqual(
        s.releases.map((r) => r.result),
        c.results,
      );
    });
  }
  test('the failure names the node and its reason; the author is shown as an address', () => {
    const s = releaseState({
      releases: RELEASES,
      latest: 3,
      evidence: [{ release: 3, node: A, ts: 21_000, reason: 'entrypoint exited' }],
      counted,
      replicas: [],
    });
    assert.equal(s.releases[2]?.failure, `${addressOf(A)}: entrypoint exited`);
    assert.equal(s.releases[0]?.by, addressOf(OWNER));
  });
});

/** Every op in a store (in a deterministic order). */
const setupOps = (store: ReturnType<typeof memStore>): Op[] => store.opsSince([], 10_000);

describe('releases and health through a store', () => {
  const setup = () => {
    const store = memStore();
    const owner = key(9);
    const [a, b] = [key(1), key(2)];
    store.author(a, 'node.register', nodeBody(1));
    store.author(b, 'node.register', nodeBody(2));
    const create = store.author(owner, 'instance.create', {
      formpackId: 'a'.repeat(64),
      name: 'web',
      replicas: 2,
      resources: R,
    });
    const id = create.body.id as string;
    for (const n of [a, b]) {
      store.author(n, 'instance.claim', { instanceId: id, node: n.publicKey });
      store.author(n, 'instance.status', {
        instanceId: id,
        node: n.publicKey,
        state: 'running',
        revision: 0,
        release: 1,
      });
    }
    return { store, owner, a, b, id };
  };
  const code = (c: string) => (e: unknown) => e instanceof FormError && e.code === c;

  test('the node holding the replica reports its health; another key, or a node without a claim, is refused', () => {
    const { store, a, b, id } = setup();
    store.author(a, 'instance.health', {
      instanceId: id,
      node: a.publicKey,
      status: 'unhealthy',
      release: 1,
      reason: 'status 503',
    });
    const rep = () => store.views().instances[0]?.replicaSet.find((r) => r.node === a.publicKey);
    assert.equal(rep()?.health?.status, 'unhealthy');
    assert.equal(rep()?.health?.reason, 'status 503');
    // b forges a report about a's replica.
    assert.throws(
      () => store.author(b, 'instance.health', { instanceId: id, node: a.publicKey, status: 'healthy', release: 1 }),
      code('STATE_OP_FORBIDDEN'),
    );
    // b signs as itself about a's replica, citing a's claim: still not its replica.
    const claimA = store.views().instances[0]?.replicaSet.find((r) => r.node === a.publicKey)?.claimedBy as string;
    const forged = createOp(
      b,
      'instance.health',
      { instanceId: id, node: b.publicKey, status: 'healthy', release: 1 },
      [claimA],
    );
    assert.throws(() => store.submit(forged), code('STATE_OP_FORBIDDEN'));
    // A key with no claim on the instance at all.
    const outsider = key(5);
    store.author(outsider, 'node.register', nodeBody(5));
    assert.throws(
      () =>
        store.author(outsider, 'instance.health', {
          instanceId: id,
          node: outsider.publicKey,
          status: 'unhealthy',
          release: 1,
        }),
      code('STATE_OP_FORBIDDEN'),
    );
    assert.equal(rep()?.health?.status, 'unhealthy', 'refused ops change nothing');
    // Reasons are printable ASCII (a terminal escape is refused, not stored).
    assert.throws(
      () =>
        store.author(a, 'instance.health', {
          instanceId: id,
          node: a.publicKey,
          status: 'unhealthy',
          release: 1,
          reason: 'bad \u001b[2J',
        }),
      code('STATE_OP_INVALID'),
    );
    store.close();
  });

  test('a release that fails during its roll-out sends the instance back to the last good one', () => {
    const { store, owner, a, id } = setup();
    const t0 = Date.now();
    store.author(
      owner,
      'instance.update',
      { instanceId: id, formpackId: 'b'.repeat(64), resources: R, release: 2 },
      t0,
    );
    let inst = store.views().instances[0];
    assert.equal(inst?.formpackId, 'b'.repeat(64));
    assert.equal(inst?.release, 2);
    assert.deepEqual(
      inst?.releases?.map((r) => [r.release, r.result]),
      [
        [1, 'superseded'],
        [2, 'rolling'],
      ],
    );
    store.author(
      a,
      'instance.status',
      { instanceId: id, node: a.publicKey, state: 'failed', revision: 0, release: 2, reason: 'exited 1' },
      t0 + 1000,
    );
    inst = store.views().instances[0];
    assert.equal(inst?.release, 1);
    assert.equal(inst?.formpackId, 'a'.repeat(64), 'the target is release 1 again');
    assert.equal(inst?.releases?.[1]?.result, 'rolled-back');
    assert.match(inst?.releases?.[1]?.failure ?? '', /exited 1/);
    // The failed replica goes back to release 1 and runs: the failure stays on record (sticky).
    store.author(
      a,
      'instance.status',
      { instanceId: id, node: a.publicKey, state: 'running', revision: 0, release: 1 },
      t0 + 2000,
    );
    inst = store.views().instances[0];
    assert.equal(inst?.release, 1);
    assert.equal(inst?.releases?.[0]?.result, 'current');
    // A rollback by the owner is a new release restoring an earlier one.
    store.author(
      owner,
      'instance.update',
      { instanceId: id, formpackId: 'a'.repeat(64), resources: R, release: 3, rollbackOf: 1 },
      t0 + 3000,
    );
    inst = store.views().instances[0];
    assert.equal(inst?.release, 3);
    assert.equal(inst?.releases?.[2]?.rollbackOf, 1);
    assert.equal(
      inst?.releases?.[2]?.result,
      'current',
      'replicas of release 1 run the same Formpack: nothing to replace',
    );
    store.close();
  });

  test('a replica that was healthy on the new release and then flaps does not roll it back; unhealthy before any pass does', () => {
    const { store, owner, a, b, id } = setup();
    const t0 = Date.now();
    store.author(
      owner,
      'instance.update',
      { instanceId: id, formpackId: 'b'.repeat(64), resources: R, release: 2 },
      t0,
    );
    const h = (n: typeof a, status: string, ts: number) =>
      store.author(
        n,
        'instance.health',
        { instanceId: id, node: n.publicKey, status, release: 2, reason: 'timeout' },
        ts,
      );
    h(a, 'healthy', t0 + 1000);
    h(a, 'unhealthy', t0 + 2000);
    assert.equal(store.views().instances[0]?.release, 2, 'a flap after a pass: still release 2');
    h(b, 'unhealthy', t0 + 3000);
    assert.equal(store.views().instances[0]?.release, 1, 'never healthy: rolled back');
    store.close();
  });

  test('only the owner makes releases; a rollback needs its release number, a release its Formpack', () => {
    const { store, owner, b, id } = setup();
    assert.throws(
      () => store.author(b, 'instance.update', { instanceId: id, formpackId: 'c'.repeat(64), release: 2 }),
      code('STATE_OP_FORBIDDEN'),
    );
    assert.throws(
      () => store.author(owner, 'instance.update', { instanceId: id, formpackId: 'a'.repeat(64), rollbackOf: 1 }),
      code('STATE_OP_INVALID'),
    );
    assert.throws(
      () => store.author(owner, 'instance.update', { instanceId: id, release: 2 }),
      code('STATE_OP_INVALID'),
    );
    assert.throws(
      () => store.author(owner, 'instance.update', { instanceId: id, formpackId: 'a'.repeat(64), release: 1 }),
      code('STATE_OP_INVALID'),
    );
    assert.equal(store.views().instances[0]?.releases?.length, 1, 'refused ops change nothing');
    store.close();
  });

  test('events: health changes, releases shipped, a failed release rolled back, an owner rollback', () => {
    const { store, owner, a, id } = setup();
    const t0 = Date.now();
    store.author(a, 'instance.health', { instanceId: id, node: a.publicKey, status: 'healthy', release: 1 }, t0);
    store.author(
      owner,
      'instance.update',
      { instanceId: id, formpackId: 'b'.repeat(64), resources: R, release: 2 },
      t0 + 1,
    );
    store.author(
      a,
      'instance.health',
      { instanceId: id, node: a.publicKey, status: 'unhealthy', release: 2, reason: 'status 500' },
      t0 + 2,
    );
    store.author(
      owner,
      'instance.update',
      { instanceId: id, formpackId: 'a'.repeat(64), resources: R, release: 3, rollbackOf: 1 },
      t0 + 3,
    );
    const evs = instanceEvents(setupOps(store), { instanceId: id, now: t0 + 10 })
      .filter((e) => e.at >= t0)
      .map((e) => [e.kind, e.detail]);
    assert.deepEqual(
      evs.map((e) => e[0]),
      ['healthy', 'updated', 'unhealthy', 'rolled-back', 'rolled-back'],
    );
    assert.match(evs[1]?.[1] ?? '', /as release 2/);
    assert.match(evs[3]?.[1] ?? '', /release 2 failed .*status 500.*rolled back/);
    assert.match(evs[4]?.[1] ?? '', /owner rolled back to release 1 \(as release 3\)/);
    store.close();
  });
});
