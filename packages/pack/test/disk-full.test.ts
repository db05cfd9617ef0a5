import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildPrereqMissing, CACHE_DIR } from './env.ts';

const skip = buildPrereqMissing();

// The data dir is a 64 MiB tmpfs mounted in a private mount namespace of a child process (nothing is
// mounted on the host): copying the image there runs out of space.
const CHILD = `
import { Builder } from ${JSON.stringify(new URL('../src/index.ts', import.meta.url).pathname)};
import { makeSpec } from ${JSON.stringify(new URL('./spec.ts', import.meta.url).pathname)};
const [dataDir, cacheDir, dir] = process.argv.slice(2);
const b = new Builder({ dataDir, cacheDir });
try {
  await b.build({ spec: makeSpec({ name: 'full', noCopy: true, diskGiB: 1 }), dir, owner: 'o' });
  console.log(JSON.stringify({ ok: true }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code, message: err.message, left: (await import('node:fs')).readdirSync(dataDir + '/formpacks') }));
}`;

test('a full disk ends the build with DISK_FULL and leaves the cache and earlier Formpacks intact', { skip }, () => {
  const work = mkdtempSync(join(tmpdir(), 'form-pack-full-'));
  try {
    const data = join(work, 'data');
    const ctx = join(work, 'ctx');
    mkdirSync(data);
    mkdirSync(ctx);
    writeFileSync(join(work, 'child.ts'), CHILD);
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '--',
        'sh',
        '-c',
        'mount -t tmpfs -o size=64m,mode=0700 tmpfs "$1" && mkdir -p "$1/formpacks/earlier" && echo keep > "$1/formpacks/earlier/x" && exec "$2" "$3" "$1" "$4" "$5"',
        'sh',
        data,
        process.execPath,
        join(work, 'child.ts'),
        CACHE_DIR,
        ctx,
      ],
      { encoding: 'utf8', timeout: 300_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.equal(out.ok, false);
    assert.equal(out.code, 'DISK_FULL', out.message);
    assert.match(out.message, /no space left/i);
    assert.deepEqual(
      out.left.filter((n: string) => n !== '.locks'),
      ['earlier'],
      'no temp dir or half Formpack left',
    );
    // The shared cache is still complete: its base and package index are there.
    const bases = readdirSync(CACHE_DIR).filter((n) => n.startsWith('base-'));
    assert.ok(bases.some((b) => existsSync(join(CACHE_DIR, b, 'packages.txt'))));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
