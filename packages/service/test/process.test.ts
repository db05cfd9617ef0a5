// processAlive (the /proc check the VMM's drivers and compliance suite share): a running process is
// alive; a zombie (ended, not reaped) and a missing pid are not.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { until } from '@formation/interface/testing';
import { processAlive } from '../src/process.ts';

const state = (pid: number): string | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2, s.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
};

test('processAlive: running yes; a zombie, an ended process, 0 and undefined no', async (t) => {
  // `sleep 30` becomes the parent of the background `sleep 1` and never waits for it: once that ends it
  // stays a zombie until its parent goes.
  const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  let out = '';
  parent.stdout.on('data', (d) => {
    out += d;
  });
  const zombie = await until('the background pid', () => Number(out.trim()) || undefined, 10_000, 20);
  await until('the background process to be a zombie', () => state(zombie) === 'Z', 10_000, 20);
  assert.equal(processAlive(zombie), false, 'a zombie has ended');
  assert.equal(processAlive(parent.pid), true, 'its parent still runs');
  assert.equal(processAlive(process.pid), true);
  parent.kill('SIGKILL');
  await until('the parent to end', () => !processAlive(parent.pid), 10_000, 20);
  for (const bad of [0, undefined, -1]) assert.equal(processAlive(bad), false, `pid ${bad}`);
});
