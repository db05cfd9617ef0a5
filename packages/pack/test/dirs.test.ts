import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FormError } from '@formation/interface';
import { Builder } from '../src/index.ts';

// A cache in /var/tmp that another local user created first controls every base layer and initramfs.
let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'form-pack-dirs-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

function refused(re: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof FormError, String(err));
    assert.equal(err.code, 'PACK_UNSAFE_DIR');
    assert.match(err.message, re);
    assert.match(err.hint ?? '', /Remove/);
    return true;
  };
}

test('a cache directory writable by everyone is refused at start', () => {
  const cache = join(work, 'cache-777');
  mkdirSync(cache);
  chmodSync(cache, 0o777);
  assert.throws(
    () => new Builder({ dataDir: join(work, 'data1'), cacheDir: cache }),
    refused(/^Cannot use the pack cache .*cache-777: it is writable by everyone \(mode 0777\)$/),
  );
  chmodSync(cache, 0o770);
  assert.throws(() => new Builder({ dataDir: join(work, 'data1'), cacheDir: cache }), refused(/writable by its group/));
});

test(
  'a cache directory owned by another user is refused at start',
  { skip: process.getuid?.() !== 0 && 'needs root (chown)' },
  () => {
    const cache = join(work, 'cache-nobody');
    mkdirSync(cache, { mode: 0o700 });
    chownSync(cache, 65534, 65534);
    assert.throws(
      () => new Builder({ dataDir: join(work, 'data2'), cacheDir: cache }),
      refused(/it is owned by uid 65534, not by this process's uid 0/),
    );
  },
);

test('a symlinked data directory is refused; missing directories are created 0700', () => {
  const real = join(work, 'elsewhere');
  mkdirSync(real, { mode: 0o700 });
  symlinkSync(real, join(work, 'data-link'));
  assert.throws(
    () => new Builder({ dataDir: join(work, 'data-link'), cacheDir: join(work, 'cache-ok') }),
    refused(/data directory .*data-link: it is a symlink/),
  );
  const b = new Builder({ dataDir: join(work, 'fresh', 'data'), cacheDir: join(work, 'fresh', 'cache') });
  for (const d of [b.cacheDir, b.dataDir, b.formpacksDir]) assert.equal(statSync(d).mode & 0o777, 0o700, d);
});
