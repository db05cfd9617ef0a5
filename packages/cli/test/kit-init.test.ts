import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { runForm } from './run-form.ts';

test('kit init --yes creates a 0600 key and config, never prints the private key', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'form-kit-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const r = await runForm(['kit', 'init', '--yes', '--json'], { FORM_HOME: home });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.ok, true);
  assert.match(out.address, /^0x[0-9a-f]{40}$/);
  const keyFile = JSON.parse(await readFile(join(home, 'keys', 'developer.json'), 'utf8'));
  assert.equal((await stat(join(home, 'keys', 'developer.json'))).mode & 0o777, 0o600);
  assert.ok(!r.stdout.includes(keyFile.privateKey), 'private key must not be printed');
  const cfg = JSON.parse(await readFile(join(home, 'config.json'), 'utf8'));
  assert.equal(cfg.joinFormnet, false);

  // Running again keeps the key.
  const again = await runForm(['kit', 'init', '--yes', '--json', '--join-formnet'], { FORM_HOME: home });
  assert.equal(JSON.parse(again.stdout).address, out.address);
  assert.equal(JSON.parse(again.stdout).created, false);
  assert.equal(JSON.parse(await readFile(join(home, 'config.json'), 'utf8')).joinFormnet, true);

  // --force replaces it.
  const forced = await runForm(['kit', 'init', '--yes', '--json', '--force'], { FORM_HOME: home });
  assert.notEqual(JSON.parse(forced.stdout).address, out.address);
});

test('kit init without a terminal and without --yes refuses with a hint', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'form-kit-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const r = await runForm(['kit', 'init'], { FORM_HOME: home });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /stdin is not a terminal/);
  assert.match(r.stderr, /--yes/);
});

test('kit init rejects a bad node URL and unknown flags', async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'form-kit-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const bad = await runForm(['kit', 'init', '--yes', '--node', 'not a url'], { FORM_HOME: home });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not a URL/);
  const unknown = await runForm(['kit', 'init', '--bogus'], { FORM_HOME: home });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown option '--bogus'/);
  assert.doesNotMatch(unknown.stderr, /at .*\.ts:\d+/, 'no stack trace');
});

test('form --help lists commands with examples', async () => {
  const r = await runForm(['--help'], {});
  assert.equal(r.code, 0);
  assert.match(r.stdout, /kit/);
  assert.match(r.stdout, /Examples:/);
});
