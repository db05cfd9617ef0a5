import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { until } from '@formation/interface/testing';
import { FORMATIOND_MAIN, pidAlive } from '../src/daemon-files.ts';

const state = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return undefined;
  }
};

test('pidAlive: a running process is alive; a zombie (ended, not reaped) and a missing PID are not', async (t) => {
  // `sleep 30` becomes the parent of the background `sleep 1` and never waits for it: once that ends it
  // stays a zombie. (A background `true` could end, and be reaped by sh, before the exec: seen in CI.)
  const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  let out = '';
  parent.stdout.on('data', (d) => {
    out += d;
  });
  const zombie = await until('the background pid', () => Number(out.trim()) || undefined, 10_000, 20);
  await until('the background process to be a zombie', () => state(zombie) === 'Z', 10_000, 20);
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
