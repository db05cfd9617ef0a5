import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair, type KeyPair, signRequest } from '@formation/identity';
import { apiIdentity, createLogger } from '@formation/service';
import { create as tarCreate } from 'tar';
import { type BuildInfo, type BuildLogLine, createPackService, packContext } from '../src/index.ts';
import { handTar } from './context-fixtures.ts';
import { buildPrereqMissing, CACHE_DIR } from './env.ts';
import { makeSpec } from './spec.ts';

type Service = Awaited<ReturnType<typeof createPackService>>;

async function tarOf(cwd: string, files: string[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of tarCreate({ cwd, portable: true, noDirRecurse: true }, files) as AsyncIterable<Buffer>)
    chunks.push(c);
  return Buffer.concat(chunks);
}

async function upload(svc: Service, key: KeyPair, body: Buffer, opts: { sha?: string; type?: string } = {}) {
  const sha = opts.sha ?? createHash('sha256').update(body).digest('hex');
  return svc.app.inject({
    method: 'POST',
    url: '/contexts',
    payload: body,
    headers: {
      'content-type': opts.type ?? 'application/x-tar',
      'x-form-content-sha256': sha,
      ...signRequest(key, { method: 'POST', path: '/contexts', bodySha256: sha, audience: apiIdentity(svc.app) }),
    },
  });
}

function signedJson(svc: Service, key: KeyPair, method: 'POST' | 'DELETE', url: string, body?: unknown) {
  const text = body === undefined ? '' : JSON.stringify(body);
  return svc.app.inject({
    method,
    url,
    ...(body === undefined ? {} : { payload: text }),
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...signRequest(key, { method, path: url, body: text, audience: apiIdentity(svc.app) }),
    },
  });
}

describe('pack API', () => {
  let work: string;
  let svc: Service;
  const key = generateKeyPair();
  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'form-pack-api-'));
    svc = await createPackService({
      dataDir: join(work, 'data'),
      // The machine's shared base cache only when the real build below runs (it saves its ~35 s); the
      // other cases build nothing and keep to a cache of their own, so they pass for any user on any
      // machine (a non-root run here met /var/tmp/formation-pack-cache owned by root and failed at start).
      cacheDir: buildPrereqMissing() ? join(work, 'cache') : CACHE_DIR,
      logger: createLogger('silent'),
      maxUploadBytes: 4 * 2 ** 20,
      maxContextBytes: 2 ** 20,
    });
    await svc.app.ready();
  });
  after(async () => {
    await svc?.close();
    rmSync(work, { recursive: true, force: true });
  });

  test('serves its OpenAPI document', async () => {
    const r = await svc.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(r.statusCode, 200);
    for (const p of [
      '/contexts',
      '/builds',
      '/builds/{buildId}/log',
      '/formpacks',
      '/formpacks/{id}',
      '/formpacks/{id}/artifacts/{name}',
    ]) {
      assert.ok(r.json().paths[p], p);
    }
  });

  test('uploads must be signed, and the body must match the signed sha256', async () => {
    const body = await tarOf(new URL('../../../examples/hello-server', import.meta.url).pathname, [
      'Formfile',
      'hello.py',
    ]);
    const unsigned = await svc.app.inject({
      method: 'POST',
      url: '/contexts',
      payload: body,
      headers: {
        'content-type': 'application/x-tar',
        'x-form-content-sha256': createHash('sha256').update(body).digest('hex'),
      },
    });
    assert.equal(unsigned.statusCode, 401);
    assert.equal(unsigned.json().error.code, 'AUTH_MISSING');
    const wrong = await upload(svc, key, body, { sha: 'a'.repeat(64) });
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().error.code, 'AUTH_BAD_SIGNATURE');
    const ok = await upload(svc, key, body);
    assert.equal(ok.statusCode, 201, ok.body);
    assert.equal(ok.json().entries, 2);
  });

  test('malicious and broken archives are refused with clear errors', async () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['traversal', handTar([{ path: '../evil.txt', type: 'File', body: 'x' }]), /outside the build directory/],
      ['absolute', handTar([{ path: '/etc/evil', type: 'File', body: 'x' }]), /absolute path/],
      [
        'symlink out',
        handTar([{ path: 'l', type: 'SymbolicLink', linkpath: '/etc/passwd' }]),
        /symlink l -> \/etc\/passwd/,
      ],
      ['symlink up', handTar([{ path: 'l', type: 'SymbolicLink', linkpath: '../x' }]), /points outside/],
      [
        'write via link',
        handTar([
          { path: 'd', type: 'SymbolicLink', linkpath: 'sub' },
          { path: 'd/f', type: 'File', body: 'x' },
        ]),
        /through the symlink/,
      ],
      ['device', handTar([{ path: 'null', type: 'CharacterDevice' }]), /device file/],
      ['fifo', handTar([{ path: 'p', type: 'FIFO' }]), /FIFO/],
      [
        'hard link',
        handTar([
          { path: 'a', type: 'File', body: 'x' },
          { path: 'b', type: 'Link', linkpath: 'a' },
        ]),
        /hard link/,
      ],
      ['bomb', handTar([{ path: 'big', type: 'File', body: 'x'.repeat(2 ** 20 + 1) }]), /expands to more than 1 MiB/],
      [
        'truncated',
        handTar([{ path: 'f', type: 'File', body: 'y'.repeat(5000) }]).subarray(0, 2048),
        /damaged or truncated/,
      ],
      ['garbage', Buffer.from('this is not a tar archive at all'.repeat(40)), /damaged or truncated|empty/],
    ];
    for (const [name, body, re] of cases) {
      const r = await upload(svc, key, body);
      assert.equal(r.statusCode, 400, `${name}: ${r.body}`);
      assert.equal(r.json().error.code, 'PACK_BAD_ARCHIVE', name);
      assert.match(r.json().error.message, re, name);
    }
    const tooBig = await upload(svc, key, Buffer.alloc(5 * 2 ** 20));
    assert.equal(tooBig.statusCode, 400);
    assert.match(tooBig.json().error.message, /over 4 MiB/);
  });

  test('unknown builds and Formpacks are 404; deleting needs a signature', async () => {
    assert.equal((await svc.app.inject({ method: 'GET', url: '/builds/nope' })).statusCode, 404);
    const nf = await svc.app.inject({ method: 'GET', url: `/formpacks/${'0'.repeat(64)}` });
    assert.equal(nf.statusCode, 404);
    assert.equal(nf.json().error.code, 'PACK_NOT_FOUND');
    const del = await svc.app.inject({ method: 'DELETE', url: `/formpacks/${'0'.repeat(64)}` });
    assert.equal(del.statusCode, 401);
    const bad = await signedJson(svc, key, 'POST', '/builds', { contextId: 'f'.repeat(24) });
    assert.equal(bad.statusCode, 404);
  });

  test('an invalid Formfile in the context is refused with its line', async () => {
    const dir = join(work, 'badff');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'Formfile'), 'NAME ok\nVCPU lots\n');
    const up = await upload(svc, key, await tarOf(dir, ['Formfile']));
    assert.equal(up.statusCode, 201);
    const r = await signedJson(svc, key, 'POST', '/builds', { contextId: up.json().contextId });
    assert.equal(r.statusCode, 400);
    assert.match(r.json().error.code, /^FORMFILE_/);
    assert.match(r.json().error.message, /^Cannot build: the Formfile is invalid\nFormfile:2:/);
  });

  test(
    'build through the API: log stream, status, list, download, owner-only delete',
    { skip: buildPrereqMissing() },
    async () => {
      const dir = join(work, 'ctx');
      mkdirSync(join(dir, 'www'), { recursive: true });
      writeFileSync(join(dir, 'Formfile'), 'NAME apitest\nCOPY ./www /srv/www\nENTRYPOINT ["sleep", "1000"]\n');
      writeFileSync(join(dir, 'www', 'index.html'), `api ${Date.now()}\n`);
      symlinkSync('index.html', join(dir, 'www', 'home.html'));
      const spec = makeSpec({
        name: 'apitest',
        copy: [{ src: 'www', dst: '/srv/www' }],
        entrypoint: { form: 'exec', argv: ['sleep', '1000'] },
      });
      const up = await upload(svc, key, await packContext(spec, dir), { type: 'application/gzip' });
      assert.equal(up.statusCode, 201, up.body);
      const start = await signedJson(svc, key, 'POST', '/builds', { contextId: up.json().contextId });
      assert.equal(start.statusCode, 202, start.body);
      const info = start.json() as BuildInfo;
      assert.match(info.id, /^[0-9a-f]{64}$/);
      const log = await svc.app.inject({ method: 'GET', url: `/builds/${info.buildId}/log` });
      const lines = log.body
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as BuildLogLine);
      const end = lines.at(-1);
      assert.deepEqual(end, { type: 'end', status: 'done', error: null });
      assert.ok(lines.some((l) => l.type === 'step' && l.step === 'disk'));
      const st = (await svc.app.inject({ method: 'GET', url: `/builds/${info.buildId}` })).json() as BuildInfo;
      assert.equal(st.status, 'done');
      const m = (await svc.app.inject({ method: 'GET', url: `/formpacks/${info.id.slice(0, 10)}` })).json();
      assert.equal(m.id, info.id);
      assert.equal(m.owner, key.address);
      const list = (await svc.app.inject({ method: 'GET', url: '/formpacks' })).json();
      assert.deepEqual(
        list.formpacks.map((x: { id: string }) => x.id),
        [info.id],
      );
      const kernelUrl = `/formpacks/${info.id}/artifacts/kernel`;
      const unsigned = await svc.app.inject({ method: 'GET', url: kernelUrl });
      assert.equal(unsigned.statusCode, 401, 'artifacts only with a signature');
      const k = await svc.app.inject({
        method: 'GET',
        url: kernelUrl,
        headers: signRequest(key, { method: 'GET', path: kernelUrl, audience: apiIdentity(svc.app) }),
      });
      assert.equal(k.statusCode, 200);
      assert.equal(createHash('sha256').update(k.rawPayload).digest('hex'), m.artifacts.kernel.sha256);
      assert.equal(k.headers['x-form-sha256'], m.artifacts.kernel.sha256);
      // A second upload of the same inputs is a cached build.
      const up2 = await upload(svc, key, await packContext(spec, dir));
      const again = (
        await signedJson(svc, key, 'POST', '/builds', { contextId: up2.json().contextId })
      ).json() as BuildInfo;
      assert.equal(again.id, info.id);
      assert.equal(again.status, 'done');
      assert.equal(again.cached, true);
      // Only the owner deletes.
      const other = await signedJson(svc, generateKeyPair(), 'DELETE', `/formpacks/${info.id}`);
      assert.equal(other.statusCode, 403);
      const del = await signedJson(svc, key, 'DELETE', `/formpacks/${info.id}`);
      assert.equal(del.statusCode, 200);
      assert.equal((await svc.app.inject({ method: 'GET', url: `/formpacks/${info.id}` })).statusCode, 404);
    },
  );
});
