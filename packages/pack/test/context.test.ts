import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  checkPackages,
  formpackId,
  normalizeSpec,
  readBuildContext,
  safeEntryPath,
  usableBytes,
} from '../src/index.ts';
import { writeTree } from './context-fixtures.ts';
import { makeSpec, makeUser } from './spec.ts';

const work = mkdtempSync(join(tmpdir(), 'form-pack-ctx-'));
after(() => rmSync(work, { recursive: true, force: true }));

const dir = (name: string, files: Record<string, string>) => writeTree(join(work, name), files);

const code = (c: string) => (e: unknown) => e instanceof FormError && e.code === c;

test('the context is the COPY sources, or the whole dir minus the Formfile, or nothing with NOCOPY', async () => {
  const d = dir('c1', { Formfile: 'NAME x', 'a.txt': 'a', 'src/b.txt': 'b', 'src/c/d.txt': 'd' });
  const whole = await readBuildContext(makeSpec(), d);
  assert.deepEqual(
    whole.entries.map((e) => e.rel),
    ['a.txt', 'src', 'src/b.txt', 'src/c', 'src/c/d.txt'],
  );
  assert.equal(whole.bytes, 3);
  const copy = await readBuildContext(
    makeSpec({
      copy: [
        { src: './src/c', dst: '/x' },
        { src: 'a.txt', dst: '/y' },
      ],
    }),
    d,
  );
  assert.deepEqual(
    copy.entries.map((e) => e.rel),
    ['a.txt', 'src/c', 'src/c/d.txt'],
  );
  const none = await readBuildContext(makeSpec({ noCopy: true }), d);
  assert.deepEqual(none.entries, []);
  await assert.rejects(
    readBuildContext(makeSpec({ copy: [{ src: 'Formfile', dst: '/f' }] }), d),
    code('FORMFILE_BAD_PATH'),
  );
  await assert.rejects(
    readBuildContext(makeSpec({ copy: [{ src: 'missing', dst: '/f' }] }), d),
    code('FORMFILE_BAD_PATH'),
  );
  await assert.rejects(
    readBuildContext(makeSpec({ copy: [{ src: '/etc/passwd', dst: '/f' }] }), d),
    code('FORMFILE_BAD_PATH'),
  );
});

test('the ID follows the normalized Formfile and the content, modes and names of the context', async () => {
  const d = dir('c2', { Formfile: 'NAME x', 'a.txt': 'a' });
  const spec = makeSpec({ name: 'x' });
  const idKey = 'ab'.repeat(32); // the developer's key of the password HMACs
  const id = async (s = spec) => formpackId(normalizeSpec(s, idKey), (await readBuildContext(s, d)).digest);
  const first = await id();
  assert.match(first, /^[0-9a-f]{64}$/);
  assert.equal(await id(), first, 'deterministic');
  writeFileSync(join(d, 'Formfile'), 'NAME x\n# only the Formfile text changed, not its meaning\n');
  assert.equal(await id(), first, 'the Formfile file itself is not context');
  writeFileSync(join(d, 'a.txt'), 'A');
  const changed = await id();
  assert.notEqual(changed, first);
  chmodSync(join(d, 'a.txt'), 0o755);
  assert.notEqual(await id(), changed, 'mode counts');
  assert.notEqual(await id(makeSpec({ name: 'x', memMiB: 1024 })), await id(), 'spec counts');
  assert.notEqual(
    await id(makeSpec({ name: 'x', users: [makeUser({ username: 'u', passwd: 'p1', disableRoot: true })] })),
    await id(makeSpec({ name: 'x', users: [makeUser({ username: 'u', passwd: 'p2', disableRoot: true })] })),
    'a new password is a new image',
  );
});

test('package names are checked against the index, naming every unknown one', () => {
  const index = new Set(['python3', 'curl', 'mail-transport-agent']);
  checkPackages(['python3', 'mail-transport-agent'], index, 'bookworm');
  assert.throws(
    () => checkPackages(['python3', 'pyhton3', 'nginxx'], index, 'bookworm'),
    (e: unknown) =>
      code('PACK_UNKNOWN_PACKAGE')(e) &&
      /pyhton3, nginxx: no such package in Debian bookworm/.test((e as Error).message),
  );
  assert.throws(() => checkPackages(['Python3'], index, 'bookworm'), /not a valid Debian package name/);
  assert.throws(() => checkPackages(['-o=Dpkg::x'], index, 'bookworm'), /not a valid Debian package name/);
});

test('archive entry paths are confined to the context', () => {
  assert.equal(safeEntryPath('./a/b.txt'), 'a/b.txt');
  assert.equal(safeEntryPath('dir/'), 'dir');
  assert.equal(safeEntryPath('./'), '.');
  for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'a\0b', 'a/..']) {
    assert.throws(() => safeEntryPath(bad), code('PACK_BAD_ARCHIVE'), bad);
  }
});

test('usable ext4 space grows with DISK and leaves room for metadata', () => {
  assert.ok(usableBytes(1) < 2 ** 30 && usableBytes(1) > 0.9 * 2 ** 30);
  assert.ok(usableBytes(5) > 4.5 * 2 ** 30 && usableBytes(5) < 5 * 2 ** 30);
});
