import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import type { VmState } from '../src/state-machine.ts';
import type { VmRecord } from '../src/types.ts';
import type { VmContext } from '../src/vm-context.ts';
import { reattachPlan, reattachVm } from '../src/vm-recover.ts';

// What a VMM restart does with a VM that had a process (vm-recover.ts): the pure plan, and the record a
// VM is left in, against a driver that reports what QEMU was found doing.

const tmp = mkdtempSync(join(tmpdir(), 'fvmm-reattach-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('reattachPlan', () => {
  const rows: Array<[VmState, 'running' | 'paused' | 'gone', ReturnType<typeof reattachPlan>]> = [
    ['running', 'gone', 'crashed'],
    ['starting', 'gone', 'crashed'],
    ['running', 'running', 'keep'],
    ['starting', 'running', 'keep'], // a cold boot goes on; its ready mark is still searched
    ['paused', 'paused', 'keep'], // paused by its owner
    ['starting', 'paused', 'reboot'], // a template restore (incoming migration) cut short
    ['restoring', 'paused', 'reboot'],
    ['snapshotting', 'paused', 'resume'],
    ['committing', 'paused', 'resume'],
    ['suspending', 'paused', 'resume'],
    ['stopping', 'running', 'keep'],
  ];
  for (const [before, found, want] of rows) {
    test(`${before}, found ${found} -> ${want}`, () => assert.equal(reattachPlan(before, found), want));
  }
});

/** A record left in `state`, a driver that finds its process `found`, and what the driver was asked. */
function world(state: VmState, found: 'running' | 'paused' | 'gone') {
  const calls: string[] = [];
  const rec = {
    id: 'vm-1',
    state,
    stateReason: 'x',
    ready: false,
    driver: { pid: 4242, spec: { id: 'vm-1' } },
    network: {},
  } as unknown as VmRecord;
  const ctx = {
    log: createLogger('silent'),
    o: {
      driver: {
        recover: async () => found,
        stop: async (_vm: unknown, o: { force?: boolean }) => {
          calls.push(`stop force=${o.force}`);
          return { forced: true, ms: 1 };
        },
        resume: async () => {
          calls.push('resume');
        },
      },
      network: { guard: async () => calls.push('guard') },
      store: { vmDir: () => join(tmp, 'vm-1'), save: () => calls.push('save') },
    },
    setState: (r: VmRecord, s: VmState, reason: string) => {
      r.state = s;
      r.stateReason = reason;
    },
  } as unknown as VmContext;
  return { rec, ctx, calls };
}

test('a VM found paused mid-boot is ended and marked crashed (to be booted again), never left paused', async () => {
  const { rec, ctx, calls } = world('starting', 'paused');
  await reattachVm(ctx, rec);
  assert.equal(rec.state, 'crashed');
  assert.match(rec.stateReason, /boot was cut short by a VMM restart \(found paused, pid 4242\)/);
  assert.equal(rec.lastExit?.kind, 'killed');
  assert.deepEqual(calls, ['stop force=true', 'save']);
});

test('a VM found paused mid-snapshot is resumed; one paused by its owner stays paused', async () => {
  const saving = world('snapshotting', 'paused');
  await reattachVm(saving.ctx, saving.rec);
  assert.equal(saving.rec.state, 'running');
  assert.match(saving.rec.stateReason, /resumed: the snapshotting it was paused for was abandoned/);
  assert.deepEqual(saving.calls, ['resume', 'guard', 'save']);
  const owners = world('paused', 'paused');
  await reattachVm(owners.ctx, owners.rec);
  assert.equal(owners.rec.state, 'paused');
  assert.deepEqual(owners.calls, ['guard', 'save']);
});

test('a cold boot found running is re-attached as running, not ready until its guest says so', async () => {
  const { rec, ctx, calls } = world('starting', 'running');
  await reattachVm(ctx, rec);
  assert.equal(rec.state, 'running');
  assert.equal(rec.ready, false);
  assert.deepEqual(calls, ['guard', 'save']);
});
