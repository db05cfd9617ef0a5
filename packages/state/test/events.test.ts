import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addressOf, type KeyPair } from '@formation/identity';
import { createOp, type InstanceEventKind, instanceEvents, type Op, parseSince } from '../src/index.ts';
import { key } from './helpers.ts';

// The event derivation is pure: a table of op sequences (as signed ops, in any order) → the events.

const owner = key(1);
const stranger = key(2);
const nodeA = key(10);
const nodeB = key(11);
const nodeC = key(12);
const admin = key(20);
const ID = 'f'.repeat(32);
const PACK = 'ab'.repeat(32);
const T0 = 1_800_000_000_000;

const op = (k: KeyPair, kind: Op['kind'], body: Record<string, unknown>, dt: number): Op =>
  createOp(k, kind, body, [], T0 + dt);
const create = (replicas = 1, dt = 0) =>
  op(
    owner,
    'instance.create',
    { id: ID, formpackId: PACK, name: 'web', replicas, resources: { vcpu: 1, memMiB: 256, diskGiB: 1 } },
    dt,
  );
const claim = (n: KeyPair, dt: number) => op(n, 'instance.claim', { instanceId: ID, node: n.publicKey }, dt);
const status = (n: KeyPair, state: string, dt: number, extra: Record<string, unknown> = {}) =>
  op(n, 'instance.status', { instanceId: ID, node: n.publicKey, state, revision: 0, ...extra }, dt);
const update = (body: Record<string, unknown>, dt: number, k: KeyPair = owner) =>
  op(k, 'instance.update', { instanceId: ID, ...body }, dt);

interface Row {
  name: string;
  ops: Op[];
  now?: number;
  lastSeen?: Record<string, number | null>;
  since?: number;
  /** Expected [kind, node (a|b|c|-), detail fragment] in order. */
  want: Array<[InstanceEventKind, string, string?]>;
}

const nodeName = (pk: string | null): string =>
  pk === nodeA.publicKey ? 'a' : pk === nodeB.publicKey ? 'b' : pk === nodeC.publicKey ? 'c' : '-';

const ROWS: Row[] = [
  { name: 'no create: nothing (an instance id nobody made)', ops: [claim(nodeA, 1)], want: [] },
  {
    name: 'create, claim, boot, run',
    ops: [
      create(),
      claim(nodeA, 100),
      status(nodeA, 'starting', 200),
      status(nodeA, 'running', 5000, { formnetIp: '10.129.1.2' }),
    ],
    want: [
      ['created', '-', 'created web (Formpack abababababab, 1 replica(s))'],
      ['claimed', 'a', 'replica placed on'],
      ['booting', 'a'],
      ['running', 'a', 'running (healthy), revision 0'],
    ],
  },
  {
    name: 'ops given in any order come out in time order',
    ops: [status(nodeA, 'running', 5000), claim(nodeA, 100), create()],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['running', 'a'],
    ],
  },
  {
    name: 'repeated identical reports collapse; a new revision while running is a revision event',
    ops: [
      create(),
      claim(nodeA, 1),
      status(nodeA, 'running', 2),
      status(nodeA, 'running', 3),
      status(nodeA, 'running', 4, { revision: 2 }),
    ],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['running', 'a'],
      ['revision', 'a', 'now runs revision 2'],
    ],
  },
  {
    name: 'failed with its reason, then healed on another node',
    ops: [
      create(),
      claim(nodeA, 1),
      status(nodeA, 'running', 2),
      status(nodeA, 'failed', 3, { reason: 'QEMU exited: killed' }),
      claim(nodeB, 4),
      status(nodeB, 'running', 5),
    ],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['running', 'a'],
      ['failed', 'a', 'failed: QEMU exited: killed'],
      ['healed', 'b', 'moved from'],
      ['running', 'b'],
    ],
  },
  {
    name: 'a claim beyond the wanted replicas replaces one whose node went silent',
    ops: [create(1), claim(nodeA, 1), status(nodeA, 'running', 2), claim(nodeB, 40_000)],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['running', 'a'],
      ['healed', 'b', 'stopped answering'],
    ],
  },
  {
    name: 'a node removed by an admin loses its replica; the next claim heals it',
    ops: [create(), claim(nodeA, 1), op(admin, 'node.remove', { node: nodeA.publicKey }, 10), claim(nodeB, 11)],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['node-removed', 'a', 'removed from the network'],
      ['healed', 'b', 'node removed'],
    ],
  },
  {
    name: 'scale up places a second replica (a claim, not a heal)',
    ops: [create(1), claim(nodeA, 1), update({ replicas: 2 }, 5), claim(nodeB, 6)],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['scaled', '-', 'from 1 to 2'],
      ['claimed', 'b'],
    ],
  },
  {
    name: 'owner stop, start, ship, resize, commit, delete',
    ops: [
      create(),
      update({ desired: 'stopped' }, 1),
      update({ desired: 'running' }, 2),
      update({ formpackId: 'cd'.repeat(32) }, 3),
      update({ resources: { vcpu: 2, memMiB: 512, diskGiB: 2 } }, 4),
      op(owner, 'instance.commit', { instanceId: ID, revision: 1, hash: 'e'.repeat(64) }, 5),
      op(owner, 'instance.delete', { instanceId: ID }, 6),
    ],
    want: [
      ['created', '-'],
      ['stopped', '-'],
      ['started', '-'],
      ['updated', '-', 'shipped Formpack cdcdcdcdcdcd'],
      ['resized', '-', '2 vCPU, 512 MiB'],
      ['committed', '-', 'revision 1'],
      ['deleted', '-'],
    ],
  },
  {
    name: "a stranger's update, commit or delete, and a node reporting on a replica it never claimed, are not events",
    ops: [
      create(),
      update({ replicas: 9 }, 1, stranger),
      op(stranger, 'instance.commit', { instanceId: ID, revision: 7, hash: 'e'.repeat(64) }, 2),
      op(stranger, 'instance.delete', { instanceId: ID }, 3),
      status(nodeC, 'running', 4),
      op(nodeA, 'instance.claim', { instanceId: ID, node: nodeB.publicKey }, 5),
    ],
    want: [['created', '-']],
  },
  {
    name: 'scaled down: the removed replica is not healed',
    ops: [
      create(2),
      claim(nodeA, 1),
      claim(nodeB, 2),
      update({ replicas: 1 }, 3),
      status(nodeB, 'deleted', 4, { reason: 'scaled down' }),
      status(nodeA, 'stopped', 5),
    ],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['claimed', 'b'],
      ['scaled', '-', 'from 2 to 1'],
      ['replica-removed', 'b', 'scaled down'],
      ['replica-stopped', 'a'],
    ],
  },
  {
    name: 'a node silent until now is lost (from the gossiped last-seen time); a live one is not',
    ops: [create(2), claim(nodeA, 1), claim(nodeB, 2)],
    now: T0 + 100_000,
    lastSeen: { [nodeA.publicKey]: T0 + 10_000, [nodeB.publicKey]: T0 + 99_000 },
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['claimed', 'b'],
      ['node-lost', 'a', 'silent since'],
    ],
  },
  {
    name: 'scale to zero: an idle replica suspended, then woken by a connection',
    ops: [
      create(),
      claim(nodeA, 1),
      status(nodeA, 'running', 2),
      status(nodeA, 'suspended', 3, { reason: 'idle: suspended to disk' }),
      status(nodeA, 'running', 4),
    ],
    want: [
      ['created', '-'],
      ['claimed', 'a'],
      ['running', 'a'],
      ['suspended', 'a', 'suspended to disk: idle'],
      ['woken', 'a', 'woken by a connection'],
    ],
  },
  {
    name: 'since filters by time',
    ops: [create(), claim(nodeA, 100), status(nodeA, 'running', 200)],
    since: T0 + 150,
    want: [['running', 'a']],
  },
];

describe('instanceEvents (pure, table)', () => {
  for (const row of ROWS) {
    test(row.name, () => {
      const events = instanceEvents(row.ops, {
        instanceId: ID,
        now: row.now ?? T0 + 60_000,
        ...(row.lastSeen ? { lastSeen: row.lastSeen } : {}),
        ...(row.since !== undefined ? { since: row.since } : {}),
      });
      assert.deepEqual(
        events.map((e) => [e.kind, nodeName(e.node)]),
        row.want.map(([k, n]) => [k, n]),
      );
      row.want.forEach(([, , detail], i) => {
        if (detail) assert.match(events[i]?.detail ?? '', new RegExp(detail.replace(/[()]/g, '\\$&')));
      });
      for (let i = 1; i < events.length; i++) assert.ok((events[i - 1]?.at ?? 0) <= (events[i]?.at ?? 0));
    });
  }

  test('each event names its op, author and the account it acted for', () => {
    const c = create();
    const [e] = instanceEvents([c], { instanceId: ID, now: T0 });
    assert.equal(e?.op, c.hash);
    assert.equal(e?.author, owner.publicKey);
    assert.equal(e?.actor, addressOf(owner.publicKey));
    assert.equal(e?.at, T0);
  });
});

describe('parseSince', () => {
  const now = T0;
  for (const [text, want] of [
    ['10m', now - 600_000],
    ['30s', now - 30_000],
    ['2h', now - 7_200_000],
    ['1d', now - 86_400_000],
    ['2026-01-01T00:00:00Z', Date.parse('2026-01-01T00:00:00Z')],
    ['1800000000000', 1_800_000_000_000],
    ['ten minutes', null],
    ['10x', null],
    ['', null],
  ] as const) {
    test(`${JSON.stringify(text)} → ${want}`, () => assert.equal(parseSince(text, now), want));
  }
});
