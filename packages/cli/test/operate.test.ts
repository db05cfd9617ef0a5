import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InstanceView, NodeView, StateClient } from '@formation/state/client';
import pc from 'picocolors';
import { formatLine, pickReplicas, sinceMs } from '../src/actions/logs.ts';
import { formatEvent, statusTargets } from '../src/actions/manage.ts';
import { cpuPercent, ioColumns } from '../src/actions/metrics.ts';

// The pure parts of `form logs` and `form manage get status <formpack-id>` (seed 000's form).

const PACK = 'ab'.repeat(32);
const ME = `0x${'1'.repeat(40)}`;
const OTHER = `0x${'2'.repeat(40)}`;
const inst = (id: string, name: string, owner: string, formpackId = PACK, deleted = false) =>
  ({
    id: id.repeat(32),
    name,
    ownerAddress: owner,
    formpackId,
    deleted,
    replicaSet: [
      { node: `02${'a'.repeat(64)}`, state: 'running' },
      { node: `03${'b'.repeat(64)}`, state: 'deleted' },
      { node: `02${'c'.repeat(64)}`, state: 'starting' },
    ],
  }) as unknown as InstanceView;
const INSTANCES = [
  inst('1', 'web', ME),
  inst('2', 'api', ME),
  inst('3', 'web', OTHER),
  inst('4', 'gone', ME, PACK, true),
];
const state = { instances: async () => INSTANCES, instance: async () => null } as unknown as StateClient;

describe('form manage get status <ref>', () => {
  test('a Formpack id resolves to every live instance of it that is mine', async () => {
    assert.deepEqual(
      (await statusTargets(state, PACK, ME)).map((i) => i.name),
      ['web', 'api'],
    );
  });
  test('without a key: every live instance of that Formpack', async () => {
    assert.deepEqual(
      (await statusTargets(state, PACK, undefined)).map((i) => i.name),
      ['web', 'api', 'web'],
    );
  });
  test('a Formpack with no instance of mine is a coded error saying why', async () => {
    await assert.rejects(statusTargets(state, PACK, `0x${'9'.repeat(40)}`), {
      code: 'INSTANCE_NOT_FOUND',
      message: /Cannot find an instance of Formpack abababababab/,
    });
    await assert.rejects(statusTargets(state, 'cd'.repeat(32), ME), { code: 'INSTANCE_NOT_FOUND' });
  });
  test('a name still means one of mine', async () => {
    assert.deepEqual(
      (await statusTargets(state, 'web', OTHER)).map((i) => i.id),
      ['3'.repeat(32)],
    );
  });
});

describe('form logs helpers', () => {
  const nodes = [
    { id: `02${'a'.repeat(64)}`, name: 'node-a', address: `0x${'a'.repeat(40)}`, endpoint: '127.0.0.1:3005' },
    { id: `02${'c'.repeat(64)}`, name: 'node-c', address: `0x${'c'.repeat(40)}`, endpoint: '10.0.0.3:3010' },
  ] as unknown as NodeView[];
  const web = INSTANCES[0] as InstanceView;

  test('every replica but removed ones; --replica by name, id prefix or address', () => {
    assert.deepEqual(
      pickReplicas(web, nodes, undefined).map((r) => r.label),
      ['node-a', 'node-c'],
    );
    assert.deepEqual(
      pickReplicas(web, nodes, 'node-c').map((r) => r.label),
      ['node-c'],
    );
    assert.deepEqual(
      pickReplicas(web, nodes, `02${'a'.repeat(8)}`).map((r) => r.label),
      ['node-a'],
    );
    assert.deepEqual(
      pickReplicas(web, nodes, `0x${'C'.repeat(40)}`).map((r) => r.label),
      ['node-c'],
    );
    assert.throws(() => pickReplicas(web, nodes, 'node-z'), {
      code: 'CLI_USAGE',
      message: /Cannot find a replica of web on node "node-z"/,
    });
  });

  test('--since: durations, ISO times, epoch ms; anything else is a usage error', () => {
    const now = 1_800_000_000_000;
    assert.equal(sinceMs('10m', now), now - 600_000);
    assert.equal(sinceMs('1d', now), now - 86_400_000);
    assert.equal(sinceMs('2026-01-01T00:00:00Z', now), Date.parse('2026-01-01T00:00:00Z'));
    assert.equal(sinceMs('1800000000000', now), 1_800_000_000_000);
    assert.throws(() => sinceMs('last tuesday', now), { code: 'CLI_USAGE' });
  });
});

describe('form manage get metrics: CPU % between two samples', () => {
  const s = (at: number, cpuSeconds: number | null) =>
    ({ at, cpuSeconds }) as unknown as Parameters<typeof cpuPercent>[0];
  for (const [name, a, b, want] of [
    ['half a core', s(0, 10), s(1000, 10.5), 50],
    ['two cores busy', s(0, 10), s(2000, 14), 200],
    ['no process', s(0, null), s(1000, 3), null],
    ['a restart in between (counter went down)', s(0, 10), s(1000, 1), null],
    ['same instant', s(5, 1), s(5, 2), null],
  ] as const) {
    test(name, () => assert.equal(cpuPercent(a, b), want));
  }
  test('disk and network columns: summed over disks, guest side, - when not measured (user-mode net, older node)', () => {
    const disks = [
      { disk: 'root', readBytes: 8 * 1048576, writtenBytes: 1048576 },
      { disk: 'data', readBytes: 0, writtenBytes: 1048576 },
    ];
    const net = { rxBytes: 2048, txBytes: 1024, rxPackets: 3, txPackets: 2 };
    assert.deepEqual(ioColumns({ disks, net }), { disk: '8.0/2.0', net: '2/1' });
    assert.deepEqual(ioColumns({ disks: [], net: null }), { disk: '-', net: '-' });
    assert.deepEqual(ioColumns({}), { disk: '-', net: '-' });
  });
});

/** Colours off and on, whatever the environment says (picocolors turns them on for CI=1 or a TTY). */
const plain = pc.createColors(false);
const painted = pc.createColors(true);
/** The C0/C1 control characters of a rendered line (tab allowed), final newline excluded. */
function controlsIn(out: string): string[] {
  return [...out.replace(/\n$/, '')].filter((c) => {
    const n = c.codePointAt(0) ?? 0;
    return (n < 0x20 && n !== 0x09) || (n >= 0x7f && n <= 0x9f);
  });
}
/** Removes exactly the SGR codes our formatters use (dim, red, yellow, cyan and their resets) — nothing a guest could add. */
function withoutOurColours(out: string): string {
  return out.replace(new RegExp(`${String.fromCharCode(27)}\\[(?:2|22|31|33|36|39)m`, 'g'), '');
}

describe('form logs: a guest cannot drive the terminal of whoever reads its logs', () => {
  const r = { node: `02${'a'.repeat(64)}`, label: 'node-a' } as Parameters<typeof formatLine>[1];
  const e = (line: string) => ({ seq: 1, t: 0, stream: 'app', src: 'entrypoint', line });
  test('escape sequences (title, colours, cursor moves, OSC 52 clipboard) and other controls are shown inert', () => {
    const hostile = '\u001b]0;pwned\u0007\u001b[2J\u001b]52;c;ZXZpbA==\u0007ok\u009b31m\rX\u0000';
    const out = formatLine(e(hostile), r, false, plain);
    assert.deepEqual(controlsIn(out), [], JSON.stringify(out));
    assert.match(out, /ok/);
    assert.match(out, /pwned/);
    // With colours on (a terminal, or CI=1 as picocolors reads it), the only escapes are our own colours.
    const coloured = formatLine(e(hostile), r, false, painted);
    assert.deepEqual(controlsIn(withoutOurColours(coloured)), [], JSON.stringify(coloured));
  });
  test('--json keeps the line exactly (JSON escapes it)', () => {
    const line = '\u001b[31mred\u001b[0m\ttab';
    assert.equal(JSON.parse(formatLine(e(line), r, true)).line, line);
  });
  test('tabs and printable text pass unchanged', () => {
    assert.match(formatLine(e('a\tb ünïcode ✓'), r, false), /a\tb ünïcode ✓\n$/);
  });
});

describe('form manage events: what a node wrote (reason, its name) cannot drive the terminal', () => {
  test('a failure reason and a node name with escape sequences are shown inert', () => {
    const out = formatEvent(
      {
        at: 0,
        kind: 'failed',
        node: `02${'a'.repeat(64)}`,
        author: null,
        actor: null,
        op: null,
        detail: 'replica failed: \u001b]0;owned\u0007\u001b[1A\u001b[2Kall good',
      },
      () => 'evil\u001b[8mnode',
      painted,
    );
    assert.deepEqual(controlsIn(withoutOurColours(out)), [], JSON.stringify(out));
    assert.match(out, /all good/);
  });
});
