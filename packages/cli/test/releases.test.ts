// `form manage releases` / `rollback` pure parts: which release a rollback restores by default, and a
// release line (a node's failure reason made inert for the terminal, colours on or off).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReleaseView } from '@formation/state/client';
import pc from 'picocolors';
import { defaultRollbackTarget, formatRelease } from '../src/actions/releases.ts';

const rel = (release: number, result: ReleaseView['result'], failure: string | null = null): ReleaseView => ({
  release,
  formpackId: String(release).repeat(64).slice(0, 64),
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  at: Date.parse('2026-12-03T22:00:00Z') + release * 1000,
  by: '0xowner',
  op: 'o'.repeat(64),
  rollbackOf: null,
  result,
  failure,
});

test('rollback by default restores the newest release before the target that did not fail', () => {
  const releases = [rel(1, 'superseded'), rel(2, 'superseded'), rel(3, 'rolled-back'), rel(4, 'current')];
  assert.equal(defaultRollbackTarget({ release: 4, releases })?.release, 2);
  assert.equal(defaultRollbackTarget({ release: 1, releases: [rel(1, 'current')] }), undefined);
  // After an automatic rollback the target is 2: the default goes to 1.
  assert.equal(defaultRollbackTarget({ release: 2, releases: releases.slice(0, 3) })?.release, 1);
});

test('a release line marks the target and makes a node’s reason inert (colours on and off)', () => {
  const bad = rel(3, 'rolled-back', '0xnode: exited \u001b[2J\u0007');
  for (const c of [pc.createColors(false), pc.createColors(true)]) {
    const line = formatRelease(bad, 2, c);
    assert.ok(!line.includes('\u001b[2J'), 'no terminal escape from a node');
    assert.ok(!line.includes('\u0007'));
    assert.match(line, /^ {4}3 {2}333333333333 {2}2026-12-03T22:00:03.000Z {2}0xowner/);
    assert.match(formatRelease(rel(2, 'current'), 2, c), /^\* {3}2/);
  }
});
