// Rolling updates, the per-node decision (rollout.ts) and how plan() uses it: which replica is
// replaced next, how many at a time, what waits for health, what a lying or silent node can do.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PlacementNode } from '@formation/scheduler';
import type { InstanceView, ReleaseView, ReplicaView } from '@formation/state';
import type { VmView } from '@formation/vmm';
import { plan } from '../src/plan.ts';
import { releaseOfFormpack, revisionBelongsHere, rolloutTurn } from '../src/rollout.ts';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const R = { vcpu: 1, memMiB: 512, diskGiB: 5 };
const rel = (release: number, formpackId: string, result: ReleaseView['result']): ReleaseView => ({
  release,
  formpackId,
  resources: R,
  at: release * 1000,
  by: '0xowner',
  op: 'o'.repeat(64),
  rollbackOf: null,
  result,
  failure: null,
});
const HC = {
  test: { type: 'http' as const, port: 8080, path: '/' },
  intervalMs: 1000,
  timeoutMs: 1000,
  retries: 2,
  startPeriodMs: 0,
};

type Rep = [node: string, state: string, release: number, health?: 'healthy' | 'unhealthy' | 'starting'];
const replica = ([node, state, release, health]: Rep): ReplicaView => ({
  node,
  claimedBy: `${node}-claim`,
  assigned: true,
  state,
  formnetIp: '10.129.1.2',
  revision: 0,
  reason: null,
  ts: 1,
  release,
  health: health ? { status: health, release, reason: null, ts: 2 } : null,
});
const inst = (reps: Rep[], o: { maxUnavailable?: number; healthcheck?: boolean; target?: string } = {}): InstanceView =>
  ({
    id: 'i'.repeat(32),
    owner: 'owner',
    ownerAddress: '0xowner',
    name: 'web',
    formpackId: o.target ?? NEW,
    replicas: reps.length,
    resources: R,
    desired: 'running',
    createdBy: 'c'.repeat(64),
    deleted: false,
    revision: 0,
    revisionHash: null,
    formpack: {
      name: 'web',
      sha256s: {},
      size: 1,
      publishedBy: 'p'.repeat(64),
      service: { expose: [8080], ...(o.healthcheck === false ? {} : { healthcheck: HC }) },
    },
    overQuota: false,
    replicaSet: reps.map(replica),
    release: o.target === OLD ? 1 : 2,
    maxUnavailable: o.maxUnavailable ?? 1,
    releases: [rel(1, OLD, 'superseded'), rel(2, NEW, 'rolling')],
  }) as InstanceView;

describe('rolloutTurn (pure)', () => {
  const rows: Array<[string, InstanceView, string, boolean]> = [
    [
      'the first old replica (by node key) goes first',
      inst([
        ['n1', 'running', 1, 'healthy'],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n1',
      true,
    ],
    [
      'the second waits for it',
      inst([
        ['n1', 'running', 1, 'healthy'],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n2',
      false,
    ],
    [
      'while the first new replica starts, the next waits',
      inst([
        ['n1', 'starting', 2],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n2',
      false,
    ],
    [
      'a new replica running but not yet healthy still holds the next one',
      inst([
        ['n1', 'running', 2, 'starting'],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n2',
      false,
    ],
    [
      'an unhealthy new replica holds the next one (the release fails instead)',
      inst([
        ['n1', 'running', 2, 'unhealthy'],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n2',
      false,
    ],
    [
      'once it is healthy, the next goes',
      inst([
        ['n1', 'running', 2, 'healthy'],
        ['n2', 'running', 1, 'healthy'],
      ]),
      'n2',
      true,
    ],
    [
      'without a HEALTHCHECK, running is enough',
      inst(
        [
          ['n1', 'running', 2],
          ['n2', 'running', 1],
        ],
        { healthcheck: false },
      ),
      'n2',
      true,
    ],
    [
      'a health report for another release does not count',
      {
        ...inst([
          ['n1', 'running', 2],
          ['n2', 'running', 1],
        ]),
        replicaSet: [
          { ...replica(['n1', 'running', 2]), health: { status: 'healthy', release: 1, reason: null, ts: 2 } },
          replica(['n2', 'running', 1, 'healthy']),
        ],
      } as InstanceView,
      'n2',
      false,
    ],
    [
      'a replica that is down goes before running ones',
      inst([
        ['n1', 'running', 1, 'healthy'],
        ['n2', 'failed', 1],
      ]),
      'n2',
      true,
    ],
    [
      '…and the running one waits',
      inst([
        ['n1', 'running', 1, 'healthy'],
        ['n2', 'failed', 1],
      ]),
      'n1',
      false,
    ],
    [
      'maxUnavailable 2: two go at once',
      inst(
        [
          ['n1', 'running', 1],
          ['n2', 'running', 1],
          ['n3', 'running', 1],
        ],
        { maxUnavailable: 2 },
      ),
      'n2',
      true,
    ],
    [
      'maxUnavailable 2: the third waits',
      inst(
        [
          ['n1', 'running', 1],
          ['n2', 'running', 1],
          ['n3', 'running', 1],
        ],
        { maxUnavailable: 2 },
      ),
      'n3',
      false,
    ],
    [
      'rolled back: the failed new replica goes back first',
      inst(
        [
          ['n1', 'failed', 2],
          ['n2', 'running', 1, 'healthy'],
        ],
        { target: OLD },
      ),
      'n1',
      true,
    ],
    [
      'a replica already reporting the target goes (its VM is being replaced)',
      inst([
        ['n1', 'starting', 2],
        ['n2', 'running', 1],
      ]),
      'n1',
      true,
    ],
    ['a node that holds no assigned replica is not held', inst([['n1', 'running', 1]]), 'n9', true],
  ];
  for (const [name, i, me, go] of rows) {
    test(name, () => {
      assert.equal(rolloutTurn(i, me).go, go, rolloutTurn(i, me).why);
    });
  }
  test('a lying node only speeds its own turn: claiming healthy on the new release lets the next go, nothing more', () => {
    // n1 lies (reports release 2 healthy while it runs anything): n2 may go, n3 still waits for n2.
    const i = inst([
      ['n1', 'running', 2, 'healthy'],
      ['n2', 'running', 1, 'healthy'],
      ['n3', 'running', 1, 'healthy'],
    ]);
    assert.equal(rolloutTurn(i, 'n2').go, true);
    assert.equal(rolloutTurn(i, 'n3').go, false);
  });
  test('a revision committed before the target release is not laid over its Formpack', () => {
    const i = inst([['n1', 'running', 2]]);
    // Release 2 is from t=2000 (rel() above).
    assert.equal(revisionBelongsHere({ ...i, revision: 1, revisionHash: 'h'.repeat(64), revisionAt: 1500 }), false);
    assert.equal(revisionBelongsHere({ ...i, revision: 1, revisionHash: 'h'.repeat(64), revisionAt: 2500 }), true);
    assert.equal(revisionBelongsHere({ ...i, release: 1, revision: 1, revisionAt: 10 }), true, 'release 1: always');
  });
  test('a silent node counted out by placement does not hold the roll-out', () => {
    const i = inst([
      ['n1', 'running', 1, 'healthy'],
      ['n2', 'running', 1, 'healthy'],
    ]);
    assert.equal(rolloutTurn(i, 'n2').go, false, 'n1 goes first');
    assert.equal(rolloutTurn(i, 'n2', ['n2', 'n3']).go, true, 'n1 is not placed any more');
  });
  test('releaseOfFormpack: the target, else the newest release of that Formpack', () => {
    const i = inst([['n1', 'running', 1]]);
    assert.equal(releaseOfFormpack(i, NEW), 2);
    assert.equal(releaseOfFormpack(i, OLD), 1);
    assert.equal(releaseOfFormpack(i, 'c'.repeat(64)), undefined);
  });
});

describe('plan() with a rolling update', () => {
  const nodes: PlacementNode[] = ['n1', 'n2'].map((id) => ({
    id,
    capacity: { vcpu: 8, memMiB: 8192, diskGiB: 100 },
    used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
    healthy: true,
  }));
  const vm = (formpack: string): VmView =>
    ({
      id: 'vm-1',
      name: 'web',
      state: 'running',
      ready: true,
      readyAt: new Date(0).toISOString(),
      source: { kind: 'formpack', id: formpack, name: 'web', dir: '/fp' },
      network: { mode: 'tap', ip: '10.129.1.2/24', gateway: '10.129.1.1', mac: '02:00:00:00:00:01', forwards: [] },
      health: null,
      revisions: [],
    }) as unknown as VmView;
  const input = (i: InstanceView, me: string, formpack: string) => ({
    instance: i,
    me,
    nodes,
    vm: vm(formpack),
    now: 10_000,
    retryAfterMs: 60_000,
    hasEntrypoint: false,
    canFetchRevisions: false,
    vmRelease: releaseOfFormpack(i, formpack),
  });
  test('its turn: replace; not its turn: the old VM keeps serving (nothing to do)', () => {
    const i = inst([
      ['n1', 'running', 1, 'healthy'],
      ['n2', 'running', 1, 'healthy'],
    ]);
    assert.equal(plan(input(i, 'n1', OLD)).kind, 'replace-formpack');
    assert.equal(plan(input(i, 'n2', OLD)).kind, 'nothing');
  });
  test('an older release’s revision is not fetched after an update (it reports revision 0)', () => {
    const i = {
      ...inst([
        ['n1', 'running', 2, 'healthy'],
        ['n2', 'running', 2, 'healthy'],
      ]),
      revision: 3,
      revisionHash: 'h'.repeat(64),
      revisionAt: 1500,
    } as InstanceView;
    const a = plan({ ...input(i, 'n1', NEW), canFetchRevisions: true });
    assert.deepEqual(a, { kind: 'nothing', why: 'running as reported' }, 'no apply-revision');
  });
  test('a replica whose reported release lags its VM reports again (with the release)', () => {
    const i = inst([
      ['n1', 'running', 1, 'healthy'],
      ['n2', 'running', 1, 'healthy'],
    ]);
    const a = plan(input(i, 'n1', NEW));
    assert.equal(a.kind, 'report');
  });
});
