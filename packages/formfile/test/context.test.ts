import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { parseFormfile, validateBuildContext } from '../src/index.ts';

let root: string;
let ctx: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'formfile-ctx-'));
  ctx = join(root, 'ctx');
  await mkdir(join(ctx, 'static', 'css'), { recursive: true });
  await writeFile(join(ctx, 'hello.py'), 'print("hi")\n');
  await writeFile(join(ctx, 'static', 'css', 'a.css'), '');
  await writeFile(join(root, 'secret.txt'), 'outside');
  await symlink('hello.py', join(ctx, 'link-inside'));
  await symlink(join(root, 'secret.txt'), join(ctx, 'link-outside'));
  await symlink('../../secret.txt', join(ctx, 'static', 'rel-outside'));
  await symlink('does-not-exist', join(ctx, 'dangling'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function check(text: string) {
  const r = parseFormfile(text);
  assert.ok(r.spec, JSON.stringify(r.errors));
  return validateBuildContext(r.spec, ctx, r.copyPositions);
}

test('existing files, directories and in-tree symlinks pass', async () => {
  assert.deepEqual(await check('NAME a\nCOPY hello.py /app\nCOPY static ./static/css . link-inside /x\n'), []);
});

test('a missing source is reported at its position', async () => {
  const errors = await check('NAME a\nCOPY hello.py /app\nCOPY   nope.py /app\n');
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, 'FORMFILE_BAD_PATH');
  assert.match(errors[0]!.message, /"nope.py" does not exist in the build directory/);
  assert.deepEqual([errors[0]!.line, errors[0]!.column], [3, 8]);
});

test('symlinks that leave the build directory are refused', async () => {
  const errors = await check('NAME a\nCOPY link-outside static/rel-outside /x\n');
  assert.equal(errors.length, 2);
  for (const e of errors) assert.match(e.message, /symlink that leads outside the build directory/);
  assert.deepEqual(
    errors.map((e) => e.column),
    [6, 19],
  );
});

test('a dangling symlink is reported', async () => {
  const errors = await check('NAME a\nCOPY dangling /x\n');
  assert.match(errors[0]!.message, /broken symlink/);
});

test('a symlinked build directory itself is fine', async () => {
  const alias = join(root, 'alias');
  await symlink(ctx, alias);
  const r = parseFormfile('NAME a\nCOPY hello.py /x\n');
  assert.deepEqual(await validateBuildContext(r.spec!, alias, r.copyPositions), []);
});

test('specs built by hand are checked too (absolute and .. sources, no positions)', async () => {
  const r = parseFormfile('NAME a\n');
  const spec = {
    ...r.spec!,
    copy: [
      { src: '/etc/passwd', dst: '/x' },
      { src: '../secret.txt', dst: '/x' },
    ],
  };
  const errors = await validateBuildContext(spec, ctx);
  assert.equal(errors.length, 2);
  assert.match(errors[0]!.message, /relative/);
  assert.match(errors[1]!.message, /outside the build directory/);
  assert.equal(errors[0]!.line, undefined);
});

test('a missing build directory is a FormError', async () => {
  const r = parseFormfile('NAME a\n');
  await assert.rejects(validateBuildContext(r.spec!, join(root, 'missing')), (err) => {
    assert.ok(isFormError(err));
    assert.equal(err.code, 'FORMFILE_NOT_FOUND');
    return true;
  });
});

test('a ParseResult with other errors is still checked (all errors at once)', async () => {
  const r = parseFormfile('NAME a\nVCPU 0\nCOPY missing.txt /x\n');
  assert.equal(r.spec, null);
  const errors = await validateBuildContext(r, ctx, r.copyPositions);
  assert.equal(errors.length, 1);
  assert.deepEqual([errors[0]!.line, errors[0]!.column], [3, 6]);
});
