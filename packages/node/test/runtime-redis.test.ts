// The runtime's own Redis: a port held by any other process is refused, never taken for ours (a
// leftover Redis of a crashed run was once talked to as this node's store), and a stale pid file that
// names a process other than a redis-server does not get that process killed. No Redis needed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormError } from '@formation/interface';
import { pidAlive } from '../src/daemon-files.ts';
import { startRedis } from '../src/extra-services.ts';

const dir = mkdtempSync(join(tmpdir(), 'form-runtime-redis-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function holdPort(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = createServer((c) => {
    n++;
    c.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port, connections: () => n };
}

test('a Redis port held by another process is refused with CONFLICT; no redis-server is started', async (t) => {
  const held = await holdPort();
  t.after(() => held.server.close());
  const redisDir = join(dir, 'held');
  await assert.rejects(startRedis(redisDir, '127.0.0.1', held.port), (err: unknown) => {
    assert.ok(err instanceof FormError);
    assert.equal(err.code, 'CONFLICT');
    assert.match(
      err.message,
      new RegExp(`Cannot start the runtime's Redis: port ${held.port} on 127.0.0.1 is already in use`),
    );
    assert.match(err.hint ?? '', /--port-offset/);
    return true;
  });
  assert.equal(existsSync(join(redisDir, 'formationd-redis.pid')), false, 'nothing was started, so nothing recorded');
});

test('a stale pid file naming a process that is not a redis-server does not get it killed', async (t) => {
  const bystander = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => bystander.kill('SIGKILL'));
  const held = await holdPort();
  t.after(() => held.server.close());
  const redisDir = join(dir, 'stale');
  mkdirSync(redisDir, { recursive: true });
  writeFileSync(join(redisDir, 'formationd-redis.pid'), `${bystander.pid}\n`);
  await assert.rejects(startRedis(redisDir, '127.0.0.1', held.port), { code: 'CONFLICT' });
  assert.equal(pidAlive(bystander.pid as number), true, 'the process the pid file names still runs');
});
