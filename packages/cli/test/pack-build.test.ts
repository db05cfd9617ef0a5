import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireOrSkip } from '@formation/interface/testing';
import { createPackService } from '@formation/pack';
import { createLogger } from '@formation/service';
import { runForm } from './run-form.ts';

const CACHE = process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache';
const skipBuild = requireOrSkip('form pack build tests', { root: true });

describe('form pack build', () => {
  let work: string;
  let env: Record<string, string>;
  let app: string;
  let closedUrl: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'form-cli-pack-'));
    // A port nothing listens on: bind one, then close it.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    closedUrl = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
    await new Promise((r) => s.close(r));
    env = { FORM_HOME: join(work, 'home'), FORM_PACK_CACHE: CACHE, FORM_PACK_URL: closedUrl };
    const r = await runForm(['kit', 'init', '--yes'], env);
    assert.equal(r.code, 0, r.stderr);
    app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'Formfile'),
      'NAME cli-pack\nUSER username:dev passwd:Very-Secret-1 sudo:true\nCOPY ./index.html /srv/www\nENTRYPOINT ["sleep", "infinity"]\n',
    );
    writeFileSync(join(app, 'index.html'), `cli ${Date.now()}\n`);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('with no node running it says how to start one or build locally', async () => {
    const r = await runForm(['pack', 'build', app], env);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`Cannot reach the pack service at ${closedUrl}`), r.stderr);
    assert.match(r.stderr, /form node up/);
    assert.match(r.stderr, /--local/);
  });

  test('an invalid Formfile stops the build with file:line:col', async () => {
    const bad = join(work, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'Formfile'), 'NAME x\nMEM lots\n');
    const r = await runForm(['pack', 'build', bad, '--local'], env);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Formfile:2:5/);
  });

  test('--local --json builds, and the same inputs give the same ID at once', { skip: skipBuild }, async () => {
    const r = await runForm(['pack', 'build', app, '--local', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.match(out.id, /^[0-9a-f]{64}$/);
    assert.equal(out.name, 'cli-pack');
    assert.equal(out.manifest.id, out.id);
    assert.equal(out.manifest.formfile.users[0].passwd, '[redacted]');
    assert.equal(r.stdout.includes('Very-Secret-1'), false);
    const again = await runForm(['pack', 'build', app, '--local'], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /Already built cli-pack/);
    assert.match(again.stdout, new RegExp(`Formpack ID: ${out.id}`));
    assert.match(again.stderr, /already built/);
  });

  test('through the pack API: upload, progress, ID', { skip: skipBuild }, async () => {
    const svc = await createPackService({
      dataDir: join(work, 'node-data'),
      cacheDir: CACHE,
      logger: createLogger('silent'),
    });
    await svc.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const url = `http://127.0.0.1:${(svc.app.server.address() as AddressInfo).port}`;
      const r = await runForm(['pack', 'build', app, '--verbose'], { ...env, FORM_PACK_URL: url });
      assert.equal(r.code, 0, r.stderr);
      const id = /Formpack ID: ([0-9a-f]{64})/.exec(r.stdout)?.[1];
      assert.ok(id, r.stdout);
      assert.match(r.stderr, /\[\s*[\d.]+s\] disk image/);
      const m = svc.builder.get(id);
      assert.equal(m?.name, 'cli-pack');
      const again = await runForm(['pack', 'build', app, '--json'], { ...env, FORM_PACK_URL: url });
      assert.equal(again.code, 0, again.stderr);
      assert.equal(JSON.parse(again.stdout).id, id, 'an existing ID comes back without a new build');
      const list = await runForm(['pack', 'list', '--json'], { ...env, FORM_PACK_URL: url });
      assert.deepEqual(
        JSON.parse(list.stdout).map((x: { id: string }) => x.id),
        [id],
      );
      const rm = await runForm(['pack', 'rm', id.slice(0, 12)], { ...env, FORM_PACK_URL: url });
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(svc.builder.get(id), null);
    } finally {
      await svc.close();
    }
  });
});
