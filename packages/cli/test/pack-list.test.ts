import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireOrSkip } from '@formation/interface/testing';
import { runForm } from './run-form.ts';

const CACHE = process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache';
const skip = requireOrSkip('form pack list tests', { root: true });

describe('form pack list / inspect / rm (--local)', { skip }, () => {
  let work: string;
  let env: Record<string, string>;
  let id: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'form-cli-packls-'));
    env = { FORM_HOME: join(work, 'home'), FORM_PACK_CACHE: CACHE };
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'Formfile'), 'NAME listed\nNOCOPY\nRUN echo built > /etc/built\n');
    const r = await runForm(['pack', 'build', app, '--local', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    id = JSON.parse(r.stdout).id;
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('list shows the Formpack, as a table and as JSON', async () => {
    const t = await runForm(['pack', 'list', '--local'], env);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^ID\s+NAME\s+IMAGE/m);
    assert.match(t.stdout, new RegExp(`^${id.slice(0, 12)}\\s+listed\\s+\\d+ MiB`, 'm'));
    const j = await runForm(['pack', 'list', '--local', '--json'], env);
    assert.deepEqual(
      JSON.parse(j.stdout).map((m: { id: string }) => m.id),
      [id],
    );
  });

  test('inspect by prefix shows resources, boot settings and artifact hashes', async () => {
    const r = await runForm(['pack', 'inspect', id.slice(0, 8), '--local'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /resources\s+1 vCPU, 512 MiB memory, 5 GiB disk/);
    assert.match(r.stdout, /boot\s+console=ttyS0 root=\/dev\/vda rw panic=-1\s+init=\/sbin\/form-init/);
    assert.match(r.stdout, /disk\.qcow2\s+[\d.]+ MiB\s+sha256:[0-9a-f]{64}/);
    const j = await runForm(['pack', 'inspect', id, '--local', '--json'], env);
    assert.equal(JSON.parse(j.stdout).id, id);
    const none = await runForm(['pack', 'inspect', 'ffffffff', '--local'], env);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /Cannot find Formpack ffffffff/);
  });

  test('rm deletes it; a second rm says it is not there', async () => {
    const r = await runForm(['pack', 'rm', id.slice(0, 10), '--local', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { deleted: id });
    const again = await runForm(['pack', 'rm', id, '--local'], env);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /Cannot find Formpack/);
    const list = await runForm(['pack', 'list', '--local'], env);
    assert.match(list.stdout, /No Formpacks yet/);
  });
});
