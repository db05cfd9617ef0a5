import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type FormRun, runForm } from './run-form.ts';

const hello = fileURLToPath(new URL('../../../examples/hello-server', import.meta.url));
let root: string;
let home: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'form-validate-'));
  home = join(root, 'home');
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

function form(args: string[], cwd?: string): Promise<FormRun> {
  return runForm(['pack', 'validate', ...args], { FORM_HOME: home }, cwd ? { cwd } : {});
}

async function dirWith(name: string, formfile?: string | Buffer, files: Record<string, string> = {}): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  if (formfile !== undefined) await writeFile(join(dir, 'Formfile'), formfile);
  for (const [f, c] of Object.entries(files)) await writeFile(join(dir, f), c);
  return dir;
}

function noStack(r: FormRun): void {
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at .*\(?(file:|node:|\/)/, 'no stack trace');
}

test('the hello-server example is valid (human and --json), password redacted', async () => {
  const r = await form([hello]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /ok .*Formfile: hello-server, 1 vCPU, 512 MiB, 5 GiB disk/);

  const j = await form([hello, '--json']);
  assert.equal(j.code, 0, j.stderr);
  const out = JSON.parse(j.stdout);
  assert.deepEqual(Object.keys(out), ['ok', 'formfile', 'errors']);
  assert.equal(out.ok, true);
  assert.deepEqual(out.errors, []);
  assert.equal(out.formfile.name, 'hello-server');
  assert.deepEqual(out.formfile.copy, [{ dst: '/app', src: 'hello.py' }]);
  assert.deepEqual(out.formfile.entrypoint, { argv: ['python3', '/app/hello.py'], form: 'exec' });
  assert.equal(out.formfile.users[0].passwd, '[redacted]');
  assert.doesNotMatch(j.stdout, /bigdog123/);
});

test('the current directory is the default, -f names another file', async () => {
  const dir = await dirWith('cwd', 'NAME from-cwd\n');
  await writeFile(join(dir, 'Formfile.dev'), 'NAME from-dev\n');
  const r = await form(['--json'], dir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).formfile.name, 'from-cwd');
  const f = await form([dir, '-f', 'Formfile.dev', '--json']);
  assert.equal(JSON.parse(f.stdout).formfile.name, 'from-dev');
});

test('an invalid Formfile: every error with line, column, the line and a caret; exit 1', async () => {
  const dir = await dirWith(
    'invalid',
    'NAME Bad_Name\nUSER username:u passwd:hunter2 sudo:maybe\nVCPU 500\nCOPY gone.txt /app\nINSTAL x\n',
  );
  const r = await form([dir]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Formfile:1:6: NAME "Bad_Name" is not a valid DNS label/);
  assert.match(r.stderr, /Formfile:2:37: USER field sudo must be a boolean/);
  assert.match(r.stderr, / {2}2 \| USER username:u passwd:\*{7} sudo:maybe\n {4}\| {37}\^\n/);
  assert.match(r.stderr, /Formfile:3:6: VCPU must be between 1 and 128/);
  assert.match(r.stderr, /Formfile:4:6: COPY source "gone.txt" does not exist/);
  assert.match(r.stderr, /Formfile:5:1: Unknown instruction "INSTAL"; did you mean INSTALL\?/);
  assert.match(r.stderr, /5 errors/);
  assert.doesNotMatch(r.stderr + r.stdout, /hunter2/);
  noStack(r);

  const j = await form([dir, '--json']);
  assert.equal(j.code, 1);
  const out = JSON.parse(j.stdout);
  assert.equal(out.ok, false);
  assert.equal(out.formfile, null);
  assert.deepEqual(
    out.errors.map((e: { code: string; line: number; column: number }) => [e.code, e.line, e.column]),
    [
      ['FORMFILE_BAD_VALUE', 1, 6],
      ['FORMFILE_BAD_USER', 2, 37],
      ['FORMFILE_OUT_OF_RANGE', 3, 6],
      ['FORMFILE_BAD_PATH', 4, 6],
      ['FORMFILE_UNKNOWN_INSTRUCTION', 5, 1],
    ],
  );
  for (const e of out.errors) assert.deepEqual(Object.keys(e), ['code', 'message', 'line', 'column']);
  assert.doesNotMatch(j.stdout, /hunter2/);
});

test('a whole-file error (no NAME) has no line or column in JSON', async () => {
  const dir = await dirWith('noname', 'VCPU 2\n');
  const j = await form([dir, '--json']);
  assert.equal(j.code, 1);
  assert.deepEqual(JSON.parse(j.stdout).errors, [
    {
      code: 'FORMFILE_MISSING_NAME',
      message:
        'Formfile has no NAME: add a line such as "NAME my-app" (a DNS label; the instance becomes <name>.<domain>)',
    },
  ]);
  const r = await form([dir]);
  assert.match(r.stderr, /Formfile: Formfile has no NAME/);
});

test('a missing directory: clear error, exit 2, JSON shape kept', async () => {
  const r = await form([join(root, 'no-such-dir')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /error: Cannot read Formfile: directory .*no-such-dir does not exist/);
  assert.match(r.stderr, /hint: /);
  noStack(r);
  const j = await form([join(root, 'no-such-dir'), '--json']);
  assert.equal(j.code, 2);
  const out = JSON.parse(j.stdout);
  assert.equal(out.ok, false);
  assert.equal(out.formfile, null);
  assert.equal(out.errors[0].code, 'FORMFILE_NOT_FOUND');
  assert.equal(out.errors[0].line, undefined);
});

test('a directory without a Formfile', async () => {
  const dir = await dirWith('empty');
  const r = await form([dir]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Formfile does not exist/);
  noStack(r);
});

test('a Formfile that is a directory', async () => {
  const dir = await dirWith('formfile-dir');
  await mkdir(join(dir, 'Formfile'));
  const r = await form([dir]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /is a directory, not a file/);
  noStack(r);
});

test('a binary Formfile', async () => {
  const dir = await dirWith('binary', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0x00, 0xff, 0xfe]));
  const r = await form([dir]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not a UTF-8 text file/);
  noStack(r);
});

test('a 10 MB Formfile', async () => {
  const dir = await dirWith('huge', Buffer.alloc(10 * 1024 * 1024, 'RUN x\n'));
  const r = await form([dir, '--json']);
  assert.equal(r.code, 2);
  const out = JSON.parse(r.stdout);
  assert.equal(out.errors[0].code, 'FORMFILE_TOO_LARGE');
  noStack(r);
});

test('an unknown flag is a usage error with exit 2', async () => {
  const r = await form([hello, '--bogus']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--bogus'/);
  noStack(r);
  const extra = await form([hello, 'another-dir']);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /too many arguments/);
});

test('pack validate --help shows examples', async () => {
  const r = await form(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Examples:/);
  assert.match(r.stdout, /form pack validate examples\/hello-server/);
});
