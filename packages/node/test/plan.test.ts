import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InstanceView } from '@formation/state';
import type { VmView } from '@formation/vmm';
import {
  type Action,
  ENTRYPOINT_SETTLE_MS,
  idleSince,
  ipOf,
  MOVED,
  OVER_QUOTA_STOP,
  type PlanInput,
  type PlanInstance,
  plan,
  planNodeStopped,
  planWake,
  REVISION_RETRY_MS,
} from '../src/plan.ts';
import { committed, ELSEWHERE, HASH, input, instance, iso, ME, NOW, node, settled, vm } from './plan-fixtures.ts';

// The controller's decisions, one row per branch of plan(): no VMs, no store, no root.

const rows: Array<[string, Partial<PlanInput>, Action]> = [
  // busy
  ['an action on the instance still runs', { busy: true }, { kind: 'nothing', why: 'an action on it is running' }],
  // deleted
  [
    'deleted with a VM here: remove it, report deleted',
    { instance: instance({ deleted: true }) },
    { kind: 'remove', vmId: 'vm-1', report: 'deleted' },
  ],
  [
    'deleted, no VM, replica not yet deleted: report deleted',
    { instance: instance({ deleted: true }), vm: undefined },
    { kind: 'report', state: 'deleted' },
  ],
  [
    'deleted, no VM, already reported',
    { instance: instance({ deleted: true }, { state: 'deleted' }), vm: undefined },
    { kind: 'nothing', why: 'deleted, nothing left here' },
  ],
  [
    'deleted, never claimed here',
    { instance: instance({ deleted: true }, null), vm: undefined },
    { kind: 'nothing', why: 'deleted, nothing left here' },
  ],
  // over quota
  [
    'over quota with a running VM: stop it (disk kept)',
    { instance: instance({ overQuota: true }) },
    { kind: 'stop', vmId: 'vm-1', reason: OVER_QUOTA_STOP },
  ],
  [
    'over quota, VM already stopped, replica reported running: report stopped',
    { instance: instance({ overQuota: true }), vm: vm({ state: 'stopped' }) },
    { kind: 'report', state: 'stopped', reason: OVER_QUOTA_STOP },
  ],
  [
    'over quota, not claimed: never claimed, never booted',
    { instance: instance({ overQuota: true }, null), vm: undefined },
    { kind: 'nothing', why: 'over quota' },
  ],
  [
    'over quota, replica already stopped',
    { instance: instance({ overQuota: true }, { state: 'stopped' }), vm: undefined },
    { kind: 'nothing', why: 'over quota' },
  ],
  // not placed here
  [
    'not placed here but a VM runs: remove it, report the move',
    { nodes: ELSEWHERE },
    { kind: 'remove', vmId: 'vm-1', report: 'stopped', reason: MOVED },
  ],
  ...(['running', 'starting', 'failed'] as const).map((state): [string, Partial<PlanInput>, Action] => [
    `not placed here, no VM, replica ${state}: report the move`,
    { nodes: ELSEWHERE, vm: undefined, instance: instance({}, { state }) },
    { kind: 'report', state: 'stopped', reason: MOVED },
  ]),
  [
    'not placed here, replica already stopped',
    { nodes: ELSEWHERE, vm: undefined, instance: instance({}, { state: 'stopped' }) },
    { kind: 'nothing', why: 'not placed here' },
  ],
  [
    'not placed here, never claimed',
    { nodes: ELSEWHERE, vm: undefined, instance: instance({}, null) },
    { kind: 'nothing', why: 'not placed here' },
  ],
  [
    'this node unhealthy in the placement input: not placed',
    { nodes: [{ ...node(ME), healthy: false }], vm: undefined, instance: instance({}, null) },
    { kind: 'nothing', why: 'not placed here' },
  ],
  // claim
  ['placed here, not claimed: claim', { instance: instance({}, null), vm: undefined }, { kind: 'claim' }],
  // new Formpack
  [
    'a VM of an older Formpack: replace it',
    { vm: vm({ source: { kind: 'formpack', id: 'e'.repeat(64), name: 'hello', dir: '/old' } }) },
    { kind: 'replace-formpack', vmId: 'vm-1' },
  ],
  // desired stopped
  [
    'desired stopped, VM running: stop it',
    { instance: instance({ desired: 'stopped' }) },
    { kind: 'stop', vmId: 'vm-1' },
  ],
  [
    'desired stopped, VM paused: stop it',
    { instance: instance({ desired: 'stopped' }), vm: vm({ state: 'paused' }) },
    { kind: 'stop', vmId: 'vm-1' },
  ],
  [
    'desired stopped, VM down, replica running: report stopped',
    { instance: instance({ desired: 'stopped' }), vm: vm({ state: 'stopped' }) },
    { kind: 'report', state: 'stopped' },
  ],
  [
    'desired stopped and stopped',
    { instance: instance({ desired: 'stopped' }, { state: 'stopped' }), vm: undefined },
    { kind: 'nothing', why: 'stopped as desired' },
  ],
  // VM down: restart, with back-off
  ...(['stopped', 'created', 'crashed'] as const).map((state): [string, Partial<PlanInput>, Action] => [
    `desired running, VM ${state}: start it again`,
    { vm: vm({ state, ready: false }) },
    { kind: 'restart', vmId: 'vm-1' },
  ]),
  [
    'VM crashed, start failed 10 s ago: back off',
    { vm: vm({ state: 'crashed' }), failedAt: NOW - 10_000 },
    { kind: 'nothing', why: 'backing off after a failed start' },
  ],
  [
    'VM crashed, start failed longer ago than the back-off: start it again',
    { vm: vm({ state: 'crashed' }), failedAt: NOW - 60_000 },
    { kind: 'restart', vmId: 'vm-1' },
  ],
  // no VM: boot, with back-off
  ['claimed, no VM: boot', { vm: undefined, instance: instance({}, { state: null }) }, { kind: 'boot' }],
  [
    'boot failed 10 s ago: back off',
    { vm: undefined, failedAt: NOW - 10_000 },
    { kind: 'nothing', why: 'backing off after a failed boot' },
  ],
  ['boot failed long ago: boot again', { vm: undefined, failedAt: NOW - 61_000 }, { kind: 'boot' }],
  // observe: not ready
  [
    'VM running but not ready yet',
    { vm: vm({ ready: false }), instance: instance({}, { state: 'starting' }) },
    { kind: 'nothing', why: 'its VM is not ready' },
  ],
  [
    'VM starting (transitional state)',
    { vm: vm({ state: 'starting' }) },
    { kind: 'nothing', why: 'its VM is not ready' },
  ],
  // observe: entrypoint crash loop
  [
    'the entrypoint exited 3 times: fail with its log',
    {
      vm: vm({ health: { checkedAt: iso(NOW), agent: 'ok', entrypoint: { status: 'exited', code: 2, restarts: 3 } } }),
    },
    { kind: 'fail-entrypoint', vmId: 'vm-1', code: 2, restarts: 3 },
  ],
  [
    'the entrypoint crash loop is already reported',
    {
      instance: instance({}, { state: 'failed' }),
      vm: vm({ health: { checkedAt: iso(NOW), agent: 'ok', entrypoint: { status: 'exited', code: 2, restarts: 5 } } }),
    },
    { kind: 'nothing', why: 'failed: the entrypoint keeps exiting' },
  ],
  // observe: entrypoint settling
  [
    'entrypoint not checked since ready, settle time passed: check health now',
    { hasEntrypoint: true, instance: instance({}, { state: 'starting' }), vm: vm({ health: null }) },
    { kind: 'check-health' },
  ],
  [
    'entrypoint just ready, not checked since: check at once (it may have run long enough)',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({ readyAt: iso(NOW - 500), health: null }),
    },
    { kind: 'check-health' },
  ],
  [
    'checked just after ready, an older guest that does not say how long it ran: wait out the settle time',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({ readyAt: iso(NOW - 500), health: { checkedAt: iso(NOW - 400), agent: 'ok', entrypoint: settled } }),
    },
    { kind: 'nothing', why: 'waiting for the entrypoint to settle' },
  ],
  [
    'the guest says the entrypoint ran 2.5 s when checked just after ready (started before ready): running',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting', formnetIp: null }),
      vm: vm({
        readyAt: iso(NOW - 500),
        health: { checkedAt: iso(NOW - 400), agent: 'ok', entrypoint: { ...settled, runningForMs: 2500 } },
      }),
    },
    { kind: 'report', state: 'running', revision: 0, formnetIp: '10.129.1.2' },
  ],
  [
    'the guest says it ran 1.5 s at a check 0.4 s ago: wait the 0.1 s left',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({
        readyAt: iso(NOW - 500),
        health: { checkedAt: iso(NOW - 400), agent: 'ok', entrypoint: { ...settled, runningForMs: 1500 } },
      }),
    },
    { kind: 'nothing', why: 'waiting for the entrypoint to settle' },
  ],
  [
    'the guest said it ran 1.5 s at a check 0.6 s ago: a check now decides',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({
        readyAt: iso(NOW - 700),
        health: { checkedAt: iso(NOW - 600), agent: 'ok', entrypoint: { ...settled, runningForMs: 1500 } },
      }),
    },
    { kind: 'check-health' },
  ],
  [
    'ran long enough but restarted once: no check asked, wait (a crash loop ends as failed)',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({
        readyAt: iso(NOW - 500),
        health: { checkedAt: iso(NOW - 400), agent: 'ok', entrypoint: { ...settled, restarts: 1, runningForMs: 9000 } },
      }),
    },
    { kind: 'nothing', why: 'waiting for the entrypoint to settle' },
  ],
  [
    'entrypoint checked after settling but restarted once: wait',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting' }),
      vm: vm({ health: { checkedAt: iso(NOW), agent: 'ok', entrypoint: { ...settled, restarts: 1 } } }),
    },
    { kind: 'nothing', why: 'waiting for the entrypoint to settle' },
  ],
  [
    'entrypoint running and settled: report running with the formnet IP',
    {
      hasEntrypoint: true,
      instance: instance({}, { state: 'starting', formnetIp: null }),
      vm: vm({ health: { checkedAt: iso(NOW - 50_000 + ENTRYPOINT_SETTLE_MS), agent: 'ok', entrypoint: settled } }),
    },
    { kind: 'report', state: 'running', revision: 0, formnetIp: '10.129.1.2' },
  ],
  // observe: reporting
  [
    'no entrypoint, ready, reported starting: report running',
    { instance: instance({}, { state: 'starting' }) },
    { kind: 'report', state: 'running', revision: 0, formnetIp: '10.129.1.2' },
  ],
  ['running as reported', {}, { kind: 'nothing', why: 'running as reported' }],
  [
    'paused VM counts as running as reported',
    { vm: vm({ state: 'paused' }) },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'the formnet IP changed: report it',
    { instance: instance({}, { formnetIp: '10.129.1.9' }) },
    { kind: 'report', state: 'running', revision: 0, formnetIp: '10.129.1.2' },
  ],
  [
    'user-mode networking has no formnet IP: report without one',
    {
      instance: instance({}, { state: 'starting', formnetIp: null }),
      vm: vm({ network: { mode: 'user', ip: '10.0.2.15/24', gateway: '10.0.2.2', mac: 'm', forwards: [] } }),
    },
    { kind: 'report', state: 'running', revision: 0 },
  ],
  // observe: revisions
  [
    'behind the committed revision: fetch and apply it',
    { instance: instance(committed) },
    { kind: 'apply-revision', vmId: 'vm-1' },
  ],
  [
    'behind, last fetch failed 5 s ago: report the revision it has',
    { instance: instance(committed, { revision: 1 }), revisionFailedAt: NOW - 5000 },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'behind, last fetch failed longer ago: fetch again',
    { instance: instance(committed), revisionFailedAt: NOW - REVISION_RETRY_MS - 1 },
    { kind: 'apply-revision', vmId: 'vm-1' },
  ],
  [
    'behind but no data dir to keep revisions: report the revision it has',
    { instance: instance(committed, { revision: 1 }), canFetchRevisions: false },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'behind, fetch backing off, applied an older one: report that one',
    {
      instance: instance(committed, { revision: 0 }),
      revisionFailedAt: NOW - 5000,
      applied: { revision: 1, sha256: 'b'.repeat(64) },
    },
    { kind: 'report', state: 'running', revision: 1, formnetIp: '10.129.1.2' },
  ],
  [
    'its own disk made the commit: at the revision',
    {
      instance: instance(committed, { revision: 1 }),
      vm: vm({ revisions: [{ revision: 1, createdAt: iso(NOW), sha256: HASH, bytes: 1, frozenMs: 1 }] }),
    },
    { kind: 'report', state: 'running', revision: 2, formnetIp: '10.129.1.2' },
  ],
  [
    'fetched and applied the commit: at the revision',
    { instance: instance(committed, { revision: 2 }), applied: { revision: 2, sha256: HASH } },
    { kind: 'nothing', why: 'running as reported' },
  ],
  // scale to zero
  [
    'autostop: idle as long as asked: suspend it',
    { instance: instance({ autostopMinutes: 5 }), idleMs: 5 * 60_000 },
    { kind: 'suspend', vmId: 'vm-1' },
  ],
  [
    'autostop: traffic within the idle time: keep it running',
    { instance: instance({ autostopMinutes: 5 }), idleMs: 5 * 60_000 - 1 },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'autostop with a short test minute',
    { instance: instance({ autostopMinutes: 2 }), idleMs: 200, minuteMs: 100 },
    { kind: 'suspend', vmId: 'vm-1' },
  ],
  [
    'autostop off: never suspended however idle',
    { instance: instance({ autostopMinutes: 0 }), idleMs: 10 ** 9 },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'autostop but traffic not measurable (user-mode VM): never suspended',
    { instance: instance({ autostopMinutes: 1 }), idleMs: undefined },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'autostop: a paused VM is not suspended',
    { instance: instance({ autostopMinutes: 1 }), vm: vm({ state: 'paused' }), idleMs: 10 ** 9 },
    { kind: 'nothing', why: 'running as reported' },
  ],
  [
    'suspended VM, replica still reported running: report suspended with its address',
    { instance: instance({ autostopMinutes: 1 }), vm: vm({ state: 'suspended', ready: false, pid: null }) },
    { kind: 'report', state: 'suspended', reason: 'idle: suspended to disk', formnetIp: '10.129.1.2' },
  ],
  [
    'suspended as reported: wait for a connection (never restarted or booted)',
    {
      instance: instance({ autostopMinutes: 1 }, { state: 'suspended' }),
      vm: vm({ state: 'suspended', ready: false }),
    },
    { kind: 'nothing', why: 'suspended until its next connection' },
  ],
  [
    'suspended, then the owner ran form manage start: wake it now',
    {
      instance: instance({ autostopMinutes: 1, wakeAt: NOW - 500 }, { state: 'suspended', ts: NOW - 1000 }),
      vm: vm({ state: 'suspended', ready: false }),
    },
    { kind: 'wake', vmId: 'vm-1' },
  ],
  [
    'a start from before it was suspended does not wake it',
    {
      instance: instance({ autostopMinutes: 1, wakeAt: NOW - 2000 }, { state: 'suspended', ts: NOW - 1000 }),
      vm: vm({ state: 'suspended', ready: false }),
    },
    { kind: 'nothing', why: 'suspended until its next connection' },
  ],
  [
    'a start while the suspend is not reported yet: report it first (the next round wakes it)',
    {
      instance: instance({ autostopMinutes: 1, wakeAt: NOW }, { state: 'running', ts: NOW - 1000 }),
      vm: vm({ state: 'suspended', ready: false }),
    },
    { kind: 'report', state: 'suspended', reason: 'idle: suspended to disk', formnetIp: '10.129.1.2' },
  ],
  [
    'suspended and the owner stops it: stop (the image is discarded)',
    {
      instance: instance({ desired: 'stopped' }, { state: 'suspended' }),
      vm: vm({ state: 'suspended', ready: false }),
    },
    { kind: 'stop', vmId: 'vm-1' },
  ],
  [
    'suspended and the instance deleted: remove the VM',
    { instance: instance({ deleted: true }, { state: 'suspended' }), vm: vm({ state: 'suspended', ready: false }) },
    { kind: 'remove', vmId: 'vm-1', report: 'deleted' },
  ],
];

for (const [name, over, want] of rows) {
  test(`plan: ${name}`, () => {
    assert.deepEqual(plan(input(over)), want);
  });
}

test('the table covers every kind of action', () => {
  const kinds = new Set(rows.map(([, , a]) => a.kind));
  const all: Array<Action['kind']> = [
    'nothing',
    'claim',
    'report',
    'remove',
    'replace-formpack',
    'stop',
    'restart',
    'boot',
    'apply-revision',
    'fail-entrypoint',
    'check-health',
    'suspend',
    'wake',
  ];
  assert.deepEqual([...kinds].sort(), [...all].sort());
});

test('placement decides: with three nodes and two replicas, exactly two nodes plan to claim', () => {
  const nodes = ['n1', 'n2', 'n3'].map(node);
  const inst = instance({ replicas: 2 }, null);
  const claims = nodes.filter((n) => plan(input({ me: n.id, nodes, instance: inst, vm: undefined })).kind === 'claim');
  assert.equal(claims.length, 2);
});

test('node stopped: replicas running or starting here say stopped; others, and deleted instances, do not', () => {
  const running = instance({ id: '1'.repeat(32) }, { state: 'running' });
  const starting = instance({ id: '2'.repeat(32) }, { state: 'starting' });
  const failed = instance({ id: '3'.repeat(32) }, { state: 'failed' });
  const deleted = instance({ id: '4'.repeat(32), deleted: true }, { state: 'running' });
  const elsewhere = instance({ id: '5'.repeat(32) }, { node: 'other-node' });
  const out = planNodeStopped([running, starting, failed, deleted, elsewhere], ME);
  assert.deepEqual(
    out.map((i) => i.id),
    [running.id, starting.id],
  );
});

test('ipOf: the formnet address only for TAP VMs with an IPv4', () => {
  assert.equal(ipOf(vm()), '10.129.1.2');
  assert.equal(
    ipOf(vm({ network: { mode: 'user', ip: '10.0.2.15/24', gateway: 'g', mac: 'm', forwards: [] } })),
    undefined,
  );
  assert.equal(ipOf(vm({ network: { mode: 'tap', ip: '', gateway: 'g', mac: 'm', forwards: [] } })), undefined);
});

// Type check only: a state view without overQuota is a valid plan instance.
const _view: InstanceView = instance();
void _view;

test('planWake: a connection wakes only a suspended replica its owner still wants running here', () => {
  const sleeping = vm({ state: 'suspended', ready: false, pid: null });
  const cases: Array<[string, PlanInstance | undefined, VmView | undefined, boolean]> = [
    ['suspended, desired running', instance({}, { state: 'suspended' }), sleeping, true],
    ['no instance holds the VM', undefined, sleeping, false],
    ['deleted', instance({ deleted: true }, { state: 'suspended' }), sleeping, false],
    ['stopped by its owner', instance({ desired: 'stopped' }, { state: 'suspended' }), sleeping, false],
    ['over quota', instance({ overQuota: true }, { state: 'suspended' }), sleeping, false],
    ['not a replica of this node', instance({}, null), sleeping, false],
    ['already running', instance({}, { state: 'running' }), vm(), false],
  ];
  for (const [name, inst, v, want] of cases) {
    const d = planWake(inst, ME, v);
    assert.equal(d.wake, want, name);
    if (!d.wake) assert.match(d.why, /./, `${name}: says why`);
  }
});

test('idleSince: the counters moving (or a first sample) restart the idle clock; still counters keep it', () => {
  const a = idleSince(undefined, { rxBytes: 10, txBytes: 5 }, 1000);
  assert.deepEqual(a, { bytes: 15, since: 1000 });
  assert.deepEqual(idleSince(a, { rxBytes: 10, txBytes: 5 }, 9000), { bytes: 15, since: 1000 });
  assert.deepEqual(idleSince(a, { rxBytes: 10, txBytes: 6 }, 9000), { bytes: 16, since: 9000 });
});

test('node stopped: a suspended replica says stopped too', () => {
  const s = instance({}, { state: 'suspended' });
  assert.deepEqual(planNodeStopped([s], ME), [s]);
});
