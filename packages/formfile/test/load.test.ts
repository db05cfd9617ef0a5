import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type FormError, isFormError } from '@formation/interface';
import { loadFormfile, MAX_FORMFILE_BYTES } from '../src/index.ts';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'formfile-load-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function dirWith(name: string, content?: string | Buffer): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  if (content !== undefined) await writeFile(join(dir, 'Formfile'), content);
  return dir;
}

async function fails(p: Promise<unknown>, code: string, message: RegExp): Promise<FormError> {
  let caught: unknown;
  await p.catch((err) => {
    caught = err;
  });
  assert.ok(isFormError(caught), `expected a FormError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.match(caught.message, message);
  return caught;
}

test('reads the Formfile of a directory, or another file with `file`', async () => {
  const dir = await dirWith('ok', 'NAME a\n');
  await writeFile(join(dir, 'Formfile.dev'), 'NAME b\n');
  const r = await loadFormfile(dir);
  assert.equal(r.text, 'NAME a\n');
  assert.equal(r.path, join(dir, 'Formfile'));
  assert.equal(r.dir, dir);
  assert.equal((await loadFormfile(dir, 'Formfile.dev')).text, 'NAME b\n');
  assert.equal((await loadFormfile(root, join(dir, 'Formfile.dev'))).text, 'NAME b\n');
});

test('missing directory', async () => {
  const e = await fails(loadFormfile(join(root, 'nope')), 'FORMFILE_NOT_FOUND', /directory .*nope does not exist/);
  assert.ok(e.hint);
});

test('a file given as the directory', async () => {
  const dir = await dirWith('file-as-dir', 'NAME a\n');
  await fails(loadFormfile(join(dir, 'Formfile')), 'FORMFILE_NOT_FOUND', /is a file, not a build directory/);
});

test('missing Formfile', async () => {
  const dir = await dirWith('empty');
  const e = await fails(loadFormfile(dir), 'FORMFILE_NOT_FOUND', /Formfile does not exist/);
  assert.match(e.hint ?? '', /-f/);
});

test('Formfile that is a directory', async () => {
  const dir = await dirWith('dir-formfile');
  await mkdir(join(dir, 'Formfile'));
  await fails(loadFormfile(dir), 'FORMFILE_UNREADABLE', /is a directory, not a file/);
});

test('unreadable Formfile', async (t) => {
  const dir = await dirWith('unreadable', 'NAME a\n');
  await chmod(join(dir, 'Formfile'), 0o000);
  if (process.getuid?.() !== 0) {
    await fails(loadFormfile(dir), 'FORMFILE_UNREADABLE', /permission denied/);
    return;
  }
  // Root reads anything: check as the unprivileged user `nobody` in a child process instead.
  await chmod(root, 0o755);
  await chmod(dir, 0o755);
  const loader = new URL('../src/index.ts', import.meta.url).href;
  const asNobody = (script: string) =>
    spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  // Only the environment may skip this test: `nobody` cannot load the package at all (e.g. the checkout
  // lives under /root). Once it can, whatever loadFormfile does is asserted.
  const probe = asNobody(`import(${JSON.stringify(loader)}).then(() => console.log('LOADED'))`);
  if (probe.status !== 0 || !probe.stdout.startsWith('LOADED')) {
    t.skip(`user nobody cannot load the package here: ${(probe.stderr || probe.stdout).split('\n')[0]}`);
    return;
  }
  const r = asNobody(`import(${JSON.stringify(loader)}).then(m => m.loadFormfile(${JSON.stringify(dir)})).then(
    () => console.log('READ'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.startsWith('{'), `expected a refusal, got: ${r.stdout}`);
  const out = JSON.parse(r.stdout) as { code: string; message: string };
  assert.equal(out.code, 'FORMFILE_UNREADABLE');
  assert.match(out.message, /permission denied/);
});

test('a special file (FIFO-like /dev/null path) is refused as not regular', async () => {
  await fails(loadFormfile('/dev', 'null'), 'FORMFILE_UNREADABLE', /not a regular file/);
});

test('too large: 10 MB is refused from its size, quickly', async () => {
  const dir = await dirWith('big', Buffer.alloc(10 * 1024 * 1024, 'a'));
  const t0 = performance.now();
  await fails(loadFormfile(dir), 'FORMFILE_TOO_LARGE', /10\.0 MiB; a Formfile may be at most 1 MiB/);
  assert.ok(performance.now() - t0 < 5000);
  const edge = await dirWith('edge', Buffer.alloc(MAX_FORMFILE_BYTES + 1, 'a'));
  await fails(loadFormfile(edge), 'FORMFILE_TOO_LARGE', /over 1 MiB/);
  const fits = await dirWith('fits', Buffer.alloc(MAX_FORMFILE_BYTES, 'a'));
  assert.equal((await loadFormfile(fits)).text.length, MAX_FORMFILE_BYTES);
});

test('binary garbage: NUL bytes and invalid UTF-8 name the line', async () => {
  const nul = await dirWith('nul', Buffer.from('NAME a\nVCPU 1\n\x00\x01\x02garbage'));
  const e = await fails(loadFormfile(nul), 'FORMFILE_BINARY', /not a UTF-8 text file \(NUL byte on line 3\)/);
  assert.equal(e.details?.line, 3);
  const latin1 = await dirWith('latin1', Buffer.from([0x4e, 0x41, 0x4d, 0x45, 0x20, 0x61, 0x0a, 0xe9, 0x0a]));
  await fails(loadFormfile(latin1), 'FORMFILE_BINARY', /invalid UTF-8 on line 2/);
  const gz = await dirWith('gzip', Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00]));
  await fails(loadFormfile(gz), 'FORMFILE_BINARY', /line 1/);
});

test('UTF-8 text with multi-byte characters loads', async () => {
  const dir = await dirWith('utf8', 'NAME a\n# café ☕\n');
  assert.match((await loadFormfile(dir)).text, /café ☕/);
});
