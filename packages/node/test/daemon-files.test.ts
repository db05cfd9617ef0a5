import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { makeZombie, until } from '@formation/interface/testing';
import { FORMATIOND_MAIN, pidAlive } from '../src/daemon-files.ts';

test('pidAlive: a running process is alive; a zombie (ended, not reaped) and a missing PID are not', async (t) => {
  const { zombie, parent } = await makeZombie(t);
  assert.equal(pidAlive(zombie), false, 'a zombie has ended');
  assert.equal(pidAlive(parent.pid as number), true, 'its parent still runs');
  assert.equal(pidAlive(process.pid), true);
  parent.kill('SIGKILL');
  await until('the parent to end', () => !pidAlive(parent.pid as number), 10_000, 20);
  for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 31]) assert.equal(pidAlive(bad), false, `pid ${bad}`);
});

test('FORMATIOND_MAIN is the formationd program in this package', () => {
  assert.ok(FORMATIOND_MAIN.endsWith('/packages/node/src/main.ts'), FORMATIOND_MAIN);
  assert.match(readFileSync(FORMATIOND_MAIN, 'utf8'), /^\/\/ formationd: /);
});
