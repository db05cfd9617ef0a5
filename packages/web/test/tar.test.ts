import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { extract } from 'tar';
import { contextFromDirectory, header, tarBlob } from '../src/app/tar.ts';

test('a directory picked in the browser becomes a ustar archive that tar extracts byte for byte', async () => {
  const long = `${'deep/'.repeat(30)}file.txt`; // 158 bytes: needs the ustar prefix field
  const files = [
    { path: 'Formfile', file: new File(['NAME x\n'], 'Formfile') },
    { path: 'app/hello.py', file: new File(['print("hi")\n'.repeat(100)], 'hello.py') },
    { path: long, file: new File([new Uint8Array(513).fill(7)], 'file.txt') },
    { path: 'empty', file: new File([], 'empty') },
  ];
  const blob = tarBlob(files);
  assert.equal(blob.size % 512, 0);
  const dir = mkdtempSync(join(tmpdir(), 'form-web-tar-'));
  try {
    const archive = join(dir, 'a.tar');
    writeFileSync(archive, Buffer.from(await blob.arrayBuffer()));
    // strict: a bad header checksum or truncated entry throws instead of being skipped.
    await extract({ file: archive, cwd: dir, strict: true });
    assert.equal(readFileSync(join(dir, 'Formfile'), 'utf8'), 'NAME x\n');
    assert.equal(readFileSync(join(dir, 'app/hello.py'), 'utf8'), 'print("hi")\n'.repeat(100));
    assert.deepEqual(readFileSync(join(dir, long)), Buffer.alloc(513, 7));
    assert.equal(readFileSync(join(dir, 'empty')).length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => header(`${'x'.repeat(101)}/${'y'.repeat(101)}`, 1, 0), /too long/);
});

test('directory uploads drop the picked folder name and skip .git and node_modules', () => {
  const f = (rel: string) =>
    Object.assign(new File(['x'], rel.split('/').at(-1) as string), { webkitRelativePath: rel });
  const ctx = contextFromDirectory([
    f('hello-server/hello.py'),
    f('hello-server/Formfile'),
    f('hello-server/.git/config'),
    f('hello-server/web/node_modules/a/index.js'),
  ]);
  assert.deepEqual(
    ctx.files.map((x) => x.path),
    ['Formfile', 'hello.py'],
  );
  assert.equal(ctx.skipped, 2);
});
