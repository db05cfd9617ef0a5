// processAlive (the /proc check the VMM's drivers and compliance suite share): a running process is
// alive; a zombie (ended, not reaped) and a missing pid are not.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeZombie, until } from '@formation/interface/testing';
import { processAlive } from '../src/process.ts';

test('processAlive: running yes; a zombie, an ended process, 0 and undefined no', async (t) => {
  const { zombie, parent } = await makeZombie(t);
  assert.equal(processAlive(zombie), false, 'a zombie has ended');
  assert.equal(processAlive(parent.pid), true, 'its parent still runs');
  assert.equal(processAlive(process.pid), true);
  parent.kill('SIGKILL');
  await until('the parent to end', () => !processAlive(parent.pid), 10_000, 20);
  for (const bad of [0, undefined, -1]) assert.equal(processAlive(bad), false, `pid ${bad}`);
});
