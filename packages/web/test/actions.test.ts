// Dashboard actions: a session key acting under the developer's delegation, against a real state
// service and a real pack API (a planted Formpack makes the build "cached", so nothing boots here; the
// e2e test builds, ships, stops and commits for real in Chromium).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createDelegation, type Delegation, generateKeyPair, type KeyPair, NonceCache } from '@formation/identity';
import type { FormpackManifest } from '@formation/interface';
import { createPackService, loadSpec } from '@formation/pack';
import { vmNameFor } from '@formation/scheduler';
import { createApiServer, requireSigner } from '@formation/service';
import type { StateStore } from '@formation/state';
import { create as tarCreate } from 'tar';
import type { WebService } from '../src/index.ts';
import { type Dashboard, listen, logger, nodeStore, signedPost, startDashboard } from './fixture.ts';

const resources = { vcpu: 1, memMiB: 512, diskGiB: 5 };

describe('dashboard actions under a delegation', () => {
  const alice = generateKeyPair();
  const bob = generateKeyPair();
  const node = generateKeyPair();
  let tmp = '';
  let store: StateStore;
  let dash: Dashboard;
  let closePack: (() => Promise<void>) | undefined;
  let web: WebService;
  let ctxDir = '';
  let plantedId = '';
  let bobInst = '';
  const diskAskedBy: string[] = [];

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'formation-web-actions-'));
    store = nodeStore(node);
    bobInst = store.author(bob, 'instance.create', {
      name: 'bobs',
      formpackId: 'b'.repeat(64),
      replicas: 1,
      resources,
    }).body.id as string;
    const pack = await createPackService({ dataDir: join(tmp, 'pack'), cacheDir: join(tmp, 'cache'), logger });
    closePack = pack.close;
    // A build context, and its Formpack already "built" by alice on this node (so the build is cached).
    ctxDir = join(tmp, 'ctx');
    mkdirSync(ctxDir);
    writeFileSync(join(ctxDir, 'Formfile'), 'NAME webapp\nVCPU 1\nMEM 512\nDISK 5\nCOPY ./app.txt /app\n');
    writeFileSync(join(ctxDir, 'app.txt'), 'hello\n');
    const { spec } = await loadSpec(ctxDir, 'Formfile', 'Formfile');
    plantedId = await pack.builder.idOf(spec, ctxDir);
    const art = (n: string) => ({ file: n, sha256: 'e'.repeat(64), bytes: 1000 });
    const manifest: FormpackManifest = {
      id: plantedId,
      name: 'webapp',
      owner: alice.address,
      createdAt: new Date().toISOString(),
      formfile: spec,
      resources,
      cmdline: 'console=ttyS0',
      init: '/sbin/init',
      artifacts: { disk: art('disk.qcow2'), kernel: art('vmlinuz'), initramfs: art('initrd.img') },
      guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' },
    };
    mkdirSync(join(tmp, 'pack', 'formpacks', plantedId), { recursive: true });
    writeFileSync(join(tmp, 'pack', 'formpacks', plantedId, 'manifest.json'), JSON.stringify(manifest));
    const vmm = await createApiServer({ name: 'vmm', logger });
    // A replica of every live instance named "webapp" runs here; its data disk is locked. The disk route
    // checks signatures as the node's does: a delegated key may ask.
    const live = () => store.views().instances.filter((i) => !i.deleted && i.name === 'webapp');
    vmm.get('/vms', async () => ({
      vms: live().map((i) => ({
        id: `vm-${i.id.slice(0, 6)}`,
        name: vmNameFor(i),
        state: 'running',
        stateReason: '',
        ready: true,
      })),
    }));
    vmm.post(
      '/attest/vms/:ref/disk',
      { preHandler: requireSigner(new NonceCache(), { allowDelegation: true }) },
      async (req) => {
        diskAskedBy.push(req.signer?.address ?? '');
        return { state: 'locked', luks: 'yes', device: '/dev/vdb' };
      },
    );
    dash = await startDashboard({ store, pack: await listen(pack.app), vmm });
    web = dash.web;
  });

  after(async () => {
    await dash?.close();
    await closePack?.();
    store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** `form web login` in a test: token, then (unless read-only) a delegation to the session key. */
  async function signIn(
    key: KeyPair,
    opts: { readOnly?: boolean; delegation?: (d: string, exp: number) => Delegation } = {},
  ) {
    const t = await signedPost(web, key, '/api/login/token');
    assert.equal(t.statusCode, 200, t.body);
    const { token, delegate, sessionExpiresAt } = t.json();
    assert.match(delegate, /^0[23][0-9a-f]{64}$/);
    if (!opts.readOnly) {
      const d = opts.delegation
        ? opts.delegation(delegate, sessionExpiresAt)
        : createDelegation(key, delegate, sessionExpiresAt);
      const r = await signedPost(web, key, '/api/login/delegation', { token, delegation: d });
      if (r.statusCode !== 200) return { error: r.json().error as { code: string; message: string } };
    }
    const res = await web.app.inject({ method: 'POST', url: '/api/session', payload: { token } });
    assert.equal(res.statusCode, 200, res.body);
    return { cookie: String(res.headers['set-cookie']).split(';')[0] as string, session: res.json() };
  }

  const act = (cookie: string, method: 'POST' | 'DELETE', url: string, payload?: unknown, headers = {}) =>
    web.app.inject({
      method,
      url,
      headers: { cookie, ...headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
    });

  async function tarball(gzip: boolean): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of tarCreate({ cwd: ctxDir, gzip, portable: true }, [
      'Formfile',
      'app.txt',
    ]) as AsyncIterable<Buffer>)
      chunks.push(c);
    return Buffer.concat(chunks);
  }

  test('a delegated session builds (log streamed), ships, stops, starts and deletes as the developer', async () => {
    const a = await signIn(alice);
    assert.ok('cookie' in a);
    const cookie = a.cookie as string;
    assert.equal(a.session.canManage, true);
    assert.equal((await web.app.inject({ url: '/api/session', headers: { cookie } })).json().canManage, true);

    const build = await web.app.inject({
      method: 'POST',
      url: '/api/builds?formfile=Formfile',
      headers: { cookie, 'content-type': 'application/gzip' },
      payload: await tarball(true),
    });
    assert.equal(build.statusCode, 202, build.body);
    assert.equal(build.json().id, plantedId);
    const log = await web.app.inject({ url: `/api/builds/${build.json().buildId}/log`, headers: { cookie } });
    assert.equal(log.statusCode, 200);
    const lines = log.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(lines.at(-1), { type: 'end', status: 'done', error: null });
    assert.equal(lines[0].step, 'cached');

    const ship = await act(cookie, 'POST', `/api/formpacks/${plantedId}/ship`, { replicas: 1 });
    assert.equal(ship.statusCode, 200, ship.body);
    const { id, created } = ship.json();
    assert.equal(created, true);
    let inst = store.views().instances.find((i) => i.id === id);
    assert.equal(inst?.ownerAddress, alice.address, 'alice owns what her session shipped');
    assert.equal(store.views().formpacks.find((f) => f.id === plantedId)?.owner, alice.address);
    const again = await act(cookie, 'POST', `/api/formpacks/${plantedId}/ship`, {});
    assert.equal(again.json().created, false, 'shipping again is a no-op, as with the CLI');

    const scale = await act(cookie, 'POST', `/api/instances/${id}/replicas`, { replicas: 3 });
    assert.equal(scale.statusCode, 200, scale.body);
    assert.match(scale.json().message, /Asked for 3 replica\(s\) of webapp \(was 1\)/);
    assert.equal(store.views().instances.find((i) => i.id === id)?.replicas, 3);
    const tooMany = await act(cookie, 'POST', `/api/instances/${id}/replicas`, { replicas: 17 });
    assert.equal(tooMany.statusCode, 400);
    assert.equal(store.views().instances.find((i) => i.id === id)?.replicas, 3);

    const stop = await act(cookie, 'POST', `/api/instances/${id}/stop`);
    assert.equal(stop.statusCode, 200, stop.body);
    assert.equal(store.views().instances.find((i) => i.id === id)?.desired, 'stopped');
    assert.equal((await act(cookie, 'POST', `/api/instances/webapp/start`)).statusCode, 200);
    assert.equal(store.views().instances.find((i) => i.id === id)?.desired, 'running');

    const disk = await web.app.inject({ url: `/api/instances/${id}/disk`, headers: { cookie } });
    assert.equal(disk.statusCode, 200, disk.body);
    assert.deepEqual(disk.json(), { state: 'locked', detail: 'encrypted, not opened since the replica booted' });
    assert.deepEqual(diskAskedBy, [alice.address], 'the node saw the session key acting for alice');

    assert.equal((await act(cookie, 'DELETE', `/api/instances/${id}`)).statusCode, 200);
    inst = store.views().instances.find((i) => i.id === id);
    assert.equal(inst?.deleted, true);
  });

  test("refusals: read-only sessions, others' instances and Formpacks, other sites, bad uploads", async () => {
    const ro = await signIn(alice, { readOnly: true });
    const roCookie = ro.cookie as string;
    assert.equal(ro.session.canManage, false);
    const shipped = store.views().instances.find((i) => !i.deleted && i.name === 'webapp');
    assert.equal(shipped, undefined, 'the first test deleted its instance');
    const r = await act(roCookie, 'POST', `/api/formpacks/${plantedId}/ship`, {});
    assert.equal(r.statusCode, 403);
    assert.match(r.json().error.message, /read-only/);
    assert.match(r.json().error.hint, /form web login/);

    const b = await signIn(bob);
    const bobCookie = b.cookie as string;
    const theirs = await act(bobCookie, 'POST', `/api/formpacks/${plantedId}/ship`, {});
    assert.equal(theirs.statusCode, 404, "bob cannot ship alice's Formpack");
    const bobsOwn = await act(bobCookie, 'POST', `/api/instances/${bobInst}/stop`);
    assert.equal(bobsOwn.statusCode, 200);
    const a = await signIn(alice);
    const aliceCookie = a.cookie as string;
    const notHers = await act(aliceCookie, 'POST', `/api/instances/${bobInst}/start`);
    assert.equal(notHers.statusCode, 404);
    assert.equal(store.views().instances.find((i) => i.id === bobInst)?.desired, 'stopped');

    const cross = await act(aliceCookie, 'POST', `/api/instances/${bobInst}/stop`, undefined, {
      origin: 'http://evil.example',
    });
    assert.equal(cross.statusCode, 403);
    assert.match(cross.json().error.message, /another site/);

    const garbage = await web.app.inject({
      method: 'POST',
      url: '/api/builds',
      headers: { cookie: aliceCookie, 'content-type': 'application/gzip' },
      payload: Buffer.from('this is not a gzip archive'),
    });
    assert.equal(garbage.statusCode, 400, garbage.body);
    assert.equal(garbage.json().error.code, 'PACK_BAD_ARCHIVE');
    const truncated = (await tarball(false)).subarray(0, 700);
    const cut = await web.app.inject({
      method: 'POST',
      url: '/api/builds',
      headers: { cookie: aliceCookie, 'content-type': 'application/x-tar' },
      payload: truncated,
    });
    assert.equal(cut.statusCode, 400, cut.body);
    const json = await act(aliceCookie, 'POST', '/api/builds', { not: 'an archive' });
    assert.equal(json.statusCode, 400);
    assert.equal(json.json().error.code, 'PACK_BAD_ARCHIVE');
  });

  test('the login delegation is checked: not yours, too long, for another key', async () => {
    const other = await signIn(alice, { delegation: (d, exp) => createDelegation(bob, d, exp) });
    assert.ok('error' in other);
    assert.equal(other.error?.code, 'AUTH_FORBIDDEN');
    assert.match(String(other.error?.message), /not signed by you/);
    const long = await signIn(alice, { delegation: (d) => createDelegation(alice, d, Date.now() + 30 * 86400_000) });
    assert.match(String(long.error?.message), /longer than 7 days/);
    const wrongKey = await signIn(alice, {
      delegation: (_d, exp) => createDelegation(alice, generateKeyPair().publicKey, exp),
    });
    assert.match(String(wrongKey.error?.message), /not the signer/);
  });
});
