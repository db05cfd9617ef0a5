import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import {
  BootTemplates,
  neutralCmdline,
  qemuFingerprint,
  type TemplateMeta,
  type TemplateWant,
} from '../src/boot-snapshot.ts';
import { loadVmmConfig } from '../src/config.ts';
import type { QemuIdentity } from '../src/qemu-identity.ts';
import { planTemplateGc, type TemplateEntry } from '../src/template-gc.ts';
import { TEST_QEMU } from './helpers.ts';
import { TemplateMemoryDriver } from './template-driver.ts';

// Boot template garbage collection: the pure plan (table), then the real files of a templates root
// deleted by BootTemplates.gc (memory driver with template operations: no QEMU needed to delete).

const qemu: QemuIdentity = TEST_QEMU;
const MiB = 2 ** 20;
const H = 3_600_000;
const NOW = Date.parse('2026-12-04T12:00:00Z');

function meta(formpackId: string, q: QemuIdentity = qemu): TemplateMeta {
  return {
    v: 1,
    want: { formpackId } as TemplateWant,
    qemu: q,
    files: {},
    createdAt: '',
    bootMs: 0,
    saveMs: 0,
  };
}
const entry = (dir: string, fp: string, mib: number, ageH: number, m: TemplateMeta | undefined = meta(fp)) =>
  ({ dir, formpackId: fp, bytes: mib * MiB, lastUsedMs: NOW - ageH * H, meta: m }) satisfies TemplateEntry;

describe('boot template GC: which templates go (pure)', () => {
  const present = new Set(['A', 'B', 'C']);
  const plan = (entries: TemplateEntry[], budgetMiB: number, inUse: string[] = []) =>
    planTemplateGc({
      entries,
      formpackPresent: (id) => present.has(id),
      qemu,
      budgetBytes: budgetMiB * MiB,
      inUse: new Set(inUse),
      nowMs: NOW,
    }).map((d) => [d.dir, d.reason]);

  const cases: Array<[string, TemplateEntry[], number, string[], Array<[string, RegExp]>]> = [
    ['all fit, all present: nothing goes', [entry('a', 'A', 100, 1), entry('b', 'B', 100, 2)], 2048, [], []],
    ['empty root', [], 2048, [], []],
    [
      'Formpack gone from the node',
      [entry('a', 'A', 100, 1), entry('x', 'X', 100, 1)],
      2048,
      [],
      [['x', /Formpack is no longer on this node/]],
    ],
    [
      'unreadable template.json or an unfinished build',
      [{ ...entry('a', 'A', 100, 1), meta: undefined }],
      2048,
      [],
      [['a', /no readable template\.json/]],
    ],
    [
      'made by another QEMU version',
      [entry('a', 'A', 100, 1, meta('A', { ...qemu, version: 'QEMU emulator version 9.0.0' }))],
      2048,
      [],
      [['a', /does not fit any more: template made by another QEMU \(QEMU emulator version 9\.0\.0/]],
    ],
    [
      'made with another CPU model',
      [entry('a', 'A', 100, 1, meta('A', { ...qemu, cpu: 'host' }))],
      2048,
      [],
      [['a', /template made with cpu host, this node uses qemu64/]],
    ],
    [
      "a template.json of another Formpack in this one's directory",
      [entry('a', 'A', 100, 1, meta('B'))],
      2048,
      [],
      [['a', /made for another Formpack/]],
    ],
    [
      'over the budget: least recently used first, only as many as needed',
      [entry('a', 'A', 100, 1), entry('b', 'B', 100, 5), entry('c', 'C', 100, 3)],
      250,
      [],
      [['b', /300 MiB, over the budget of 250 MiB: least recently used \(300 min ago\)/]],
    ],
    [
      'over the budget by a lot: oldest two go',
      [entry('a', 'A', 100, 1), entry('b', 'B', 100, 5), entry('c', 'C', 100, 3)],
      120,
      [],
      [
        ['b', /least recently used/],
        ['c', /200 MiB, over the budget of 120 MiB/],
      ],
    ],
    [
      'in use: never deleted, even gone or oldest; it still counts against the budget',
      [entry('a', 'A', 100, 9), entry('b', 'B', 100, 5), entry('x', 'X', 100, 1)],
      150,
      ['a', 'x'],
      [['b', /over the budget/]],
    ],
    ['in use alone over the budget: nothing to delete', [entry('a', 'A', 300, 9)], 150, ['a'], []],
    [
      'deleted for a reason first, then the budget is met by the rest',
      [entry('a', 'A', 100, 1), entry('x', 'X', 500, 9), entry('b', 'B', 100, 2)],
      250,
      [],
      [['x', /no longer on this node/]],
    ],
    [
      'same last use: by directory, whatever the order found',
      [entry('d2', 'B', 100, 4), entry('d1', 'A', 100, 4)],
      150,
      [],
      [['d1', /least recently used/]],
    ],
  ];
  for (const [name, entries, budget, inUse, want] of cases) {
    test(name, () => {
      const got = plan(entries, budget, inUse);
      assert.deepEqual(
        got.map((g) => g[0]),
        want.map((w) => w[0]),
      );
      for (const [i, [, re]] of want.entries()) assert.match(String(got[i]?.[1]), re);
    });
  }

  test('the check can fail: a plan that ignored the in-use set would be caught', () => {
    const got = plan([entry('a', 'A', 300, 9)], 150, []);
    assert.deepEqual(
      got.map((g) => g[0]),
      ['a'],
      'without the pin the same template goes',
    );
  });
});

describe('boot template GC over real files (memory driver)', () => {
  let tmp: string;
  let root: string;
  let fpDir: string;
  const driver = new TemplateMemoryDriver(qemu);
  const key = qemuFingerprint(qemu);

  function want(fp: string): TemplateWant {
    return {
      formpackId: fp,
      kernelSha256: '1'.repeat(64),
      initramfsSha256: null,
      diskSha256: null,
      kernel: `${fpDir}/${fp}/vmlinuz`,
      baseDisk: `${fpDir}/${fp}/disk.qcow2`,
      baseDiskFormat: 'qcow2',
      diskGiB: 1,
      cmdline: neutralCmdline('console=ttyS0'),
      memMiB: 256,
      vcpu: 1,
      dataDiskMiB: 0,
      agentChannel: 'org.qemu.guest_agent.0',
      netMode: 'user',
    };
  }

  /** A saved template as BootTemplates writes one (1 MiB of memory), last used `ageH` hours ago. */
  async function template(fp: string, dirKey: string, ageH: number, q: QemuIdentity = qemu): Promise<string> {
    const dir = join(root, fp, dirKey);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'memory.mig'), randomBytes(MiB), { mode: 0o600 });
    writeFileSync(join(dir, 'disk.qcow2'), 'overlay', { mode: 0o600 });
    // What the memory driver restores from (its stand-in for memory.mig + disk.qcow2).
    writeFileSync(join(dir, 'memory.json'), '{}', { mode: 0o600 });
    writeFileSync(join(dir, 'disk.json'), '{}', { mode: 0o600 });
    const files: TemplateMeta['files'] = {};
    for (const f of ['memory.mig', 'disk.qcow2']) {
      files[f] = { sha256: await sha256File(join(dir, f)), bytes: f === 'memory.mig' ? MiB : 7 };
    }
    const m: TemplateMeta = { v: 1, want: want(fp), qemu: q, files, createdAt: '', bootMs: 0, saveMs: 0 };
    writeFileSync(join(dir, 'template.json'), JSON.stringify(m), { mode: 0o600 });
    const t = (Date.now() - ageH * H) / 1000;
    utimesSync(join(dir, 'template.json'), t, t);
    return dir;
  }

  /** A VM of Formpack `fp`'s shape (a template of it restores into it), named `name`. */
  const vmFor = (fp: string, name: string) =>
    driver.create({
      id: `vm-${name}`,
      name,
      vcpu: 1,
      memMiB: 256,
      dir: `${tmp}/vms/vm-${name}/qemu`,
      kernel: want(fp).kernel,
      cmdline: want(fp).cmdline,
      baseDisk: want(fp).baseDisk,
      baseDiskFormat: 'qcow2',
      diskGiB: 1,
      network: { mode: 'user', forwards: [], mac: '52:54:00:00:00:09' },
      agentChannel: 'org.qemu.guest_agent.0',
    });

  const templates = (maxMiB: number) =>
    new BootTemplates({
      driver,
      root,
      vmDir: `${tmp}/vms`,
      logger: createLogger('silent'),
      formpacksDir: fpDir,
      maxMiB,
      gcEveryMs: 0,
    });

  before(() => {
    tmp = mkdtempSync('/tmp/fh2-tplgc-');
    root = `${tmp}/templates`;
    fpDir = `${tmp}/formpacks`;
    for (const fp of ['A', 'B', 'D']) {
      mkdirSync(`${fpDir}/${fp}`, { recursive: true });
      writeFileSync(`${fpDir}/${fp}/disk.qcow2`, 'disk');
    }
  });

  after(async () => {
    await driver.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('gone, foreign, unfinished and least recently used templates go; a restore counts as a use', async () => {
    const a = await template('A', key, 3);
    const b = await template('B', key, 2);
    const d = await template('D', key, 1);
    const c = await template('C', key, 0); // Formpack C is not on this node
    writeFileSync(join(root, 'C', 'capability.json'), '{"capable":true}');
    const old = await template('A', 'aaaaaaaaaaaaaaaa', 0, { ...qemu, version: 'QEMU emulator version 6.2.0' });
    mkdirSync(join(root, 'B', `${key}.build`), { mode: 0o700 });
    writeFileSync(join(root, 'B', `${key}.build`, 'memory.mig'), randomBytes(4096));

    // A VM restored from A: its last use is now, so B becomes the least recently used.
    const vm = await vmFor('A', 'gc1');
    const t1 = templates(2.5);
    const fit = await t1.find(want('A'));
    assert.equal(fit.ok, true, JSON.stringify(fit));
    if (!fit.ok) return;
    await t1.restore(vm, fit);
    assert.equal(await driver.status(vm), 'running', 'restored from A');
    await driver.destroy(vm);

    const gone = await t1.gc();
    const byDir = new Map(gone.map((g) => [g.dir, g.reason]));
    assert.deepEqual([...byDir.keys()].sort(), [b, c, old, join(root, 'B', `${key}.build`)].sort());
    assert.match(String(byDir.get(c)), /Formpack is no longer on this node/);
    assert.match(String(byDir.get(old)), /another QEMU/);
    assert.match(String(byDir.get(b)), /over the budget of 3 MiB: least recently used \(120 min ago\)/);
    assert.equal(byDir.has(a), false, 'A, the oldest made, was just restored from: kept');
    assert.equal(byDir.has(d), false, 'D fits in the budget with A');
    assert.ok(existsSync(a) && existsSync(d));
    assert.equal(existsSync(b), false);
    assert.equal(existsSync(c), false);
    assert.equal(existsSync(join(root, 'C')), false, 'a gone Formpack leaves nothing (capability.json too)');
    assert.equal(existsSync(old), false);
    assert.equal(existsSync(join(root, 'B', `${key}.build`)), false);
    assert.deepEqual(readdirSync(join(root, 'A')), [key]);
  });

  test('a template pinned by a restore survives a budget of nothing; the next GC after the restore takes it', async () => {
    const a = join(root, 'A', key);
    const t = templates(0);
    const fit = await t.find(want('A'));
    assert.equal(fit.ok, true, JSON.stringify(fit));
    if (!fit.ok) return;
    const first = await t.gc();
    assert.ok(existsSync(a), 'pinned: kept');
    assert.ok(
      first.some((x) => x.formpackId === 'D'),
      'D (not pinned) goes',
    );
    const vm = await vmFor('A', 'gc2');
    await t.restore(vm, fit);
    await driver.destroy(vm);
    const second = await t.gc();
    assert.deepEqual(
      second.map((x) => x.dir),
      [a],
    );
    assert.equal(existsSync(a), false);
  });
});

describe('VMM config: boot snapshots on by default, template budget validated', () => {
  test('bootSnapshots defaults to true and can be turned off', () => {
    assert.equal(loadVmmConfig({}, {}).bootSnapshots, true);
    assert.equal(loadVmmConfig({ VMM_BOOT_SNAPSHOTS: 'false' }, {}).bootSnapshots, false);
    assert.equal(loadVmmConfig({}, { bootSnapshots: false }).bootSnapshots, false);
  });

  test('bootStandby defaults to 1, from VMM_BOOT_STANDBY; 0 turns it off; negative or over 16 is CONFIG_INVALID', () => {
    assert.equal(loadVmmConfig({}, {}).bootStandby, 1);
    assert.equal(loadVmmConfig({ VMM_BOOT_STANDBY: '0' }, {}).bootStandby, 0);
    for (const bad of ['-1', '17', '1.5']) {
      assert.throws(
        () => loadVmmConfig({ VMM_BOOT_STANDBY: bad }, {}),
        (e: unknown) => e instanceof FormError && e.code === 'CONFIG_INVALID' && /bootStandby/.test(e.message),
        bad,
      );
    }
  });

  test('bootSnapshotMaxMiB defaults to 2048; below 128 or not a whole number is CONFIG_INVALID', () => {
    assert.equal(loadVmmConfig({}, {}).bootSnapshotMaxMiB, 2048);
    assert.equal(loadVmmConfig({ VMM_BOOT_SNAPSHOT_MAX_MIB: '4096' }, {}).bootSnapshotMaxMiB, 4096);
    for (const v of ['0', '127', '-5', '1.5', 'big']) {
      assert.throws(
        () => loadVmmConfig({ VMM_BOOT_SNAPSHOT_MAX_MIB: v }, {}),
        (e: unknown) => e instanceof FormError && e.code === 'CONFIG_INVALID' && /bootSnapshotMaxMiB/.test(e.message),
        v,
      );
    }
  });
});
