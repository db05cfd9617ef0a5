import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormError } from '@formation/interface';
import { Builder } from '../src/index.ts';
import { buildPrereqMissing, CACHE_DIR } from './env.ts';
import { makeSpec, makeUser } from './spec.ts';

// Exploits from issue 17 against the build: each RUN step is code of whoever sent the Formfile.
const skip = buildPrereqMissing(['python3']);
// A uid range of our own, so leftover processes of this test's sandboxes can be found by uid.
const ID_BASE = 1_400_000_000 + (process.pid % 1000) * 65536;

function debugfs(raw: string, req: string): string {
  return spawnSync('debugfs', ['-R', req, raw], { encoding: 'utf8' }).stdout;
}

/** PIDs of live (not zombie) processes running as a host uid of our sandbox range. */
function sandboxPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
      const dead = /^State:\s+[ZX]/m.test(status);
      if (uid >= ID_BASE && uid < ID_BASE + 65536 && !dead) out.push(Number(name));
    } catch {}
  }
  return out;
}

function rejectsWith(code: string, re: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof FormError, `expected FormError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, re);
    return true;
  };
}

describe('build sandbox (real builds)', { skip }, () => {
  let work: string;
  let ctx: string;
  let builder: Builder;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'form-pack-sandbox-'));
    ctx = join(work, 'ctx');
    mkdirSync(ctx);
    builder = new Builder({
      dataDir: join(work, 'data'),
      cacheDir: CACHE_DIR,
      runTimeoutMs: 4000,
      sandbox: { idBase: ID_BASE, maxProcs: 512 },
    });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('the double-chroot escape stays inside the image; ownership and setuid bits survive', async () => {
    const marker = join(work, 'escaped', 'host-marker');
    const escapeScript = [
      'import os',
      'os.makedirs("x", exist_ok=True)',
      'os.chroot("x")',
      'os.chdir("../../../../../../../../..")',
      'os.chroot(".")',
      `os.makedirs(${JSON.stringify(join(work, 'escaped'))}, exist_ok=True)`,
      `open(${JSON.stringify(marker)}, "w").write("escaped\\n")`,
      'open("/escape-landed", "w").write("here\\n")',
    ].join('; ');
    const spec = makeSpec({
      name: 'escape',
      noCopy: true,
      diskGiB: 1,
      install: ['python3'],
      users: [makeUser({ username: 'alice' })],
      run: [
        `python3 -c '${escapeScript}'`,
        'mkdir -p /srv/owned && touch /srv/owned/f && chown -R alice:alice /srv/owned',
      ],
    });
    const r = await builder.build({ spec, dir: ctx, owner: 'o' });
    assert.equal(existsSync(marker), false, 'the RUN step wrote on the host');
    // It landed in the image instead.
    const raw = join(work, 'escape.raw');
    const disk = join(builder.pathOf(r.id), 'disk.qcow2');
    assert.equal(spawnSync('qemu-img', ['convert', '-O', 'raw', disk, raw]).status, 0);
    assert.equal(debugfs(raw, 'cat /escape-landed'), 'here\n');
    // Files keep the image's ownership on disk (the sandbox's host uids never show).
    assert.match(debugfs(raw, 'stat /srv/owned/f'), /User:\s+1000\s+Group:\s+1000/);
    assert.match(debugfs(raw, 'stat /home/alice'), /User:\s+1000\s+Group:\s+1000/);
    const shadow = debugfs(raw, 'stat /etc/shadow');
    assert.match(shadow, /Mode:\s+0640/);
    assert.match(shadow, /User:\s+0\s+Group:\s+42\s/);
    const passwd = debugfs(raw, 'stat /usr/bin/passwd');
    assert.match(passwd, /Mode:\s+04755/, 'setuid bit kept');
    assert.match(passwd, /User:\s+0\s+Group:\s+0\s/);
    rmSync(raw);
  });

  test('RUN cannot reach the host network (a listener on 127.0.0.1 sees nothing)', async () => {
    let connections = 0;
    const server: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      const spec = makeSpec({
        name: 'netprobe',
        noCopy: true,
        diskGiB: 1,
        install: ['python3'],
        run: [
          `python3 -c 'import socket; s = socket.create_connection(("127.0.0.1", ${port}), timeout=3); s.sendall(b"hi"); print("CONNECTED")'`,
        ],
      });
      await assert.rejects(
        builder.build({ spec, dir: ctx, owner: 'o' }),
        rejectsWith('PACK_BUILD_FAILED', /Connection refused|Network is unreachable/),
      );
      assert.equal(connections, 0);
    } finally {
      server.close();
    }
  });

  test('RUN sleep infinity ends with PACK_BUILD_TIMEOUT naming the step; nothing keeps running; the next build works', async () => {
    const t0 = Date.now();
    const spec = makeSpec({ name: 'sleeper', noCopy: true, diskGiB: 1, run: ['echo start', 'sleep infinity'] });
    await assert.rejects(
      builder.build({ spec, dir: ctx, owner: 'o' }),
      rejectsWith('PACK_BUILD_TIMEOUT', /RUN sleep infinity \(step 2\/2\) did not finish within 4 s/),
    );
    assert.ok(Date.now() - t0 < 60_000, `took ${Date.now() - t0} ms`);
    assert.deepEqual(sandboxPids(), [], 'no process of the sandbox is left');
    assert.ok(!readdirSync(join(work, 'data', 'formpacks')).some((n) => n.startsWith('.tmp-')), 'no temp dir left');
    const ok = await builder.build({
      spec: makeSpec({ name: 'after', noCopy: true, diskGiB: 1, run: ['echo fine > /fine'] }),
      dir: ctx,
      owner: 'o',
    });
    assert.ok(statSync(join(builder.pathOf(ok.id), 'disk.qcow2')).size > 0);
  });

  test('a whole build has a time limit too', async () => {
    const t0 = Date.now();
    const b = new Builder({
      dataDir: join(work, 'data2'),
      cacheDir: CACHE_DIR,
      buildTimeoutMs: 15_000,
      runTimeoutMs: 60_000,
      sandbox: { idBase: ID_BASE, maxProcs: 512 },
    });
    const spec = makeSpec({ name: 'slow', noCopy: true, diskGiB: 1, run: ['sleep 1', 'sleep 1000'] });
    await assert.rejects(
      b.build({ spec, dir: ctx, owner: 'o' }),
      rejectsWith(
        'PACK_BUILD_TIMEOUT',
        /^Cannot build: the build \(at (RUN \d\/2: sleep \d+|step \w+)\) did not finish within 15 s$/,
      ),
    );
    assert.ok(Date.now() - t0 < 40_000, `took ${Date.now() - t0} ms`);
    assert.deepEqual(sandboxPids(), []);
  });

  test('a fork bomb in RUN hits the process limit and ends the build', async () => {
    const b = new Builder({
      dataDir: join(work, 'data3'),
      cacheDir: CACHE_DIR,
      runTimeoutMs: 60_000,
      sandbox: { idBase: ID_BASE, maxProcs: 40 },
    });
    const spec = makeSpec({
      name: 'forker',
      noCopy: true,
      diskGiB: 1,
      run: ['i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait'],
    });
    const t0 = Date.now();
    await assert.rejects(b.build({ spec, dir: ctx, owner: 'o' }), rejectsWith('PACK_BUILD_FAILED', /Cannot fork/));
    assert.ok(Date.now() - t0 < 30_000, 'ended at the limit, not after the sleeps');
    assert.deepEqual(sandboxPids(), []);
  });

  test('RUN cannot reach the kernel interfaces a sandbox escape starts from (seccomp)', async () => {
    const spec = makeSpec({ name: 'nested', noCopy: true, diskGiB: 1, run: ['unshare --user --map-root-user true'] });
    await assert.rejects(
      builder.build({ spec, dir: ctx, owner: 'o' }),
      rejectsWith('PACK_BUILD_FAILED', /unshare failed: Operation not permitted/),
    );
  });
});
