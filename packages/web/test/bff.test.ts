import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { expectedMeasurement } from '@formation/attest';
import { generateKeyPair } from '@formation/identity';
import { vmNameFor } from '@formation/scheduler';
import { createApiServer } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { FormpackDetail, FormpackInfo, InstanceInfo, NetworkInfo } from '../src/index.ts';
import { SESSION_COOKIE, type WebService } from '../src/index.ts';
import {
  type Dashboard,
  formnetOf,
  logger,
  nodeStore,
  offlineDashboard,
  signedHeaders,
  signedPost,
  signIn,
  startDashboard,
} from './fixture.ts';

const resources = { vcpu: 1, memMiB: 512, diskGiB: 2 };

/** The node APIs: a real state service, and small stand-ins for pack, VMM and formnet. */
describe('web BFF', () => {
  const alice = generateKeyPair();
  const bob = generateKeyPair();
  const node = generateKeyPair();
  let tmp: string;
  let store: StateStore;
  let dash: Dashboard;
  let web: WebService;
  let aliceInst = '';
  let bobInst = '';
  let cookie = '';
  const consoleCalls: string[] = [];

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'formation-web-test-'));
    mkdirSync(join(tmp, 'dist', 'assets'), { recursive: true });
    writeFileSync(join(tmp, 'dist', 'index.html'), '<!doctype html><title>dash</title>');
    writeFileSync(join(tmp, 'dist', 'assets', 'app.js'), 'console.log(1)');
    writeFileSync(join(tmp, 'secret.txt'), 'do not serve');

    store = nodeStore(node);
    // A live node beats; status counts replicas only on nodes with a recent heartbeat.
    store.author(node, 'node.heartbeat', { status: 'healthy' });
    const fpA = 'a'.repeat(64);
    const fpB = 'b'.repeat(64);
    store.author(alice, 'formpack.publish', {
      id: fpA,
      name: 'hello',
      owner: alice.address,
      sha256s: { disk: 'c'.repeat(64) },
      size: 1234,
    });
    store.author(bob, 'formpack.publish', {
      id: fpB,
      name: 'bobs',
      owner: bob.address,
      sha256s: { disk: 'd'.repeat(64) },
      size: 99,
    });
    aliceInst = store.author(alice, 'instance.create', { name: 'hello', formpackId: fpA, replicas: 1, resources }).body
      .id as string;
    bobInst = store.author(bob, 'instance.create', { name: 'bobs', formpackId: fpB, replicas: 1, resources }).body
      .id as string;
    store.author(node, 'instance.claim', { instanceId: aliceInst, node: node.publicKey });
    store.author(node, 'instance.status', {
      instanceId: aliceInst,
      node: node.publicKey,
      state: 'running',
      formnetIp: '10.129.0.2',
      revision: 0,
    });

    const pack = await createApiServer({ name: 'pack', logger });
    pack.get('/formpacks', async () => ({
      formpacks: [
        {
          id: fpA,
          name: 'hello',
          owner: alice.address,
          createdAt: '2026-01-01T00:00:00Z',
          formfile: { name: 'hello' },
          resources,
          cmdline: 'console=ttyS0',
          init: '/sbin/init',
          artifacts: { disk: { file: 'disk.raw', sha256: 'c'.repeat(64), bytes: 1000 } },
        },
      ],
    }));
    pack.get('/formpacks/:id', async (req, reply) => {
      const { id } = req.params as { id: string };
      if (!fpA.startsWith(id)) return reply.status(404).send({ error: { code: 'PACK_NOT_FOUND', message: 'no' } });
      return {
        id: fpA,
        name: 'hello',
        owner: alice.address,
        createdAt: '2026-01-01T00:00:00Z',
        formfile: { name: 'hello', entrypoint: ['/srv/hello'] },
        resources,
        cmdline: 'console=ttyS0',
        init: '/sbin/init',
        artifacts: {
          disk: { file: 'disk.raw', sha256: 'c'.repeat(64), bytes: 1000 },
          kernel: { file: 'vmlinuz', sha256: 'e'.repeat(64), bytes: 10 },
          initramfs: { file: 'initrd.img', sha256: 'f'.repeat(64), bytes: 10 },
        },
      };
    });
    const vmm = await createApiServer({ name: 'vmm', logger });
    vmm.get('/vms', async () => ({
      vms: [
        {
          id: 'vm1',
          name: vmNameFor({ id: aliceInst, name: 'hello' }),
          state: 'running',
          stateReason: '',
          ready: true,
        },
        { id: 'vm2', name: vmNameFor({ id: bobInst, name: 'bobs' }), state: 'running', stateReason: '', ready: true },
      ],
    }));
    vmm.get('/vms/:id/console', async (req) => {
      const { id } = req.params as { id: string };
      consoleCalls.push(id);
      return { id, output: `console of ${id}\nhello from the guest\n` };
    });
    dash = await startDashboard({
      store,
      pack,
      vmm,
      formnet: await formnetOf(node),
      web: { staticDir: join(tmp, 'dist'), sampleIntervalMs: 50 },
    });
    web = dash.web;
  });

  after(async () => {
    await dash?.close();
    store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('login: a token needs a developer signature, works once, and opens an httpOnly session', async () => {
    const unsigned = await web.app.inject({ method: 'POST', url: '/api/login/token', payload: {} });
    assert.equal(unsigned.statusCode, 401);
    assert.equal(unsigned.json().error.code, 'AUTH_MISSING');

    const t = await signedPost(web, alice, '/api/login/token');
    assert.equal(t.statusCode, 200);
    const { token, path } = t.json();
    assert.match(path, /^\/login#token=/);
    assert.ok(path.endsWith(token));

    const res = await web.app.inject({ method: 'POST', url: '/api/session', payload: { token } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.json().address, alice.address);
    const set = String(res.headers['set-cookie']);
    assert.match(set, new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{30,};`));
    assert.match(set, /HttpOnly/);
    assert.match(set, /SameSite=Strict/);
    cookie = set.split(';')[0] as string;

    const again = await web.app.inject({ method: 'POST', url: '/api/session', payload: { token } });
    assert.equal(again.statusCode, 401, 'a login token works once');
    assert.equal(again.json().error.code, 'AUTH_EXPIRED');

    const me = await web.app.inject({ method: 'GET', url: '/api/session', headers: { cookie } });
    assert.equal(me.json().address, alice.address);
    const anon = await web.app.inject({ method: 'GET', url: '/api/session' });
    assert.equal(anon.statusCode, 401);
    const forged = await web.app.inject({
      method: 'GET',
      url: '/api/session',
      headers: { cookie: `${SESSION_COOKIE}=x` },
    });
    assert.equal(forged.statusCode, 401);
  });

  test('a replayed signed token request is refused', async () => {
    const headers = signedHeaders(web, bob, '/api/login/token', '{}');
    const first = await web.app.inject({ method: 'POST', url: '/api/login/token', headers, payload: '{}' });
    assert.equal(first.statusCode, 200);
    const replay = await web.app.inject({ method: 'POST', url: '/api/login/token', headers, payload: '{}' });
    assert.equal(replay.statusCode, 401);
    assert.equal(replay.json().error.code, 'AUTH_REPLAYED');
  });

  test('instances: each developer sees only their own, with status and replicas', async () => {
    const none = await web.app.inject({ method: 'GET', url: '/api/instances' });
    assert.equal(none.statusCode, 401);
    const res = await web.app.inject({ method: 'GET', url: '/api/instances', headers: { cookie } });
    assert.equal(res.statusCode, 200);
    const list = res.json() as InstanceInfo[];
    assert.deepEqual(
      list.map((i) => i.id),
      [aliceInst],
    );
    const i = list[0] as InstanceInfo;
    assert.equal(i.status, 'SUCCESS');
    assert.equal(i.dnsName, 'hello.dev.formation.local');
    assert.equal(i.replicaSet[0]?.formnetIp, '10.129.0.2');
    assert.equal(i.replicaSet[0]?.health, 'healthy');
    assert.equal(i.replicaSet[0]?.nodeName, 'node-test');
    assert.equal(i.replicaSet[0]?.local, true);

    const bobCookie = await signIn(web, bob);
    const bobs = (
      await web.app.inject({ method: 'GET', url: '/api/instances', headers: { cookie: bobCookie } })
    ).json();
    assert.deepEqual(
      (bobs as InstanceInfo[]).map((x) => [x.id, x.status]),
      [[bobInst, 'PENDING']],
    );
  });

  test("another developer's instance and its console are not found", async () => {
    const other = await web.app.inject({ method: 'GET', url: `/api/instances/${bobInst}`, headers: { cookie } });
    assert.equal(other.statusCode, 404);
    assert.equal(other.json().error.code, 'INSTANCE_NOT_FOUND');
    const before = consoleCalls.length;
    const con = await web.app.inject({ method: 'GET', url: `/api/instances/${bobInst}/console`, headers: { cookie } });
    assert.equal(con.statusCode, 404);
    assert.equal(consoleCalls.length, before, 'the VMM was not asked');
  });

  test('console: the serial output of your instance on this node', async () => {
    const res = await web.app.inject({
      method: 'GET',
      url: `/api/instances/${aliceInst}/console`,
      headers: { cookie },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.match(res.json().output, /console of vm1/);
    assert.equal(res.json().vmName, vmNameFor({ id: aliceInst, name: 'hello' }));
    const byName = await web.app.inject({ method: 'GET', url: '/api/instances/hello', headers: { cookie } });
    assert.equal(byName.json().id, aliceInst);
  });

  test('formpacks: only yours, with the manifest when built here', async () => {
    const res = await web.app.inject({ method: 'GET', url: '/api/formpacks', headers: { cookie } });
    const list = res.json() as FormpackInfo[];
    assert.deepEqual(
      list.map((p) => [p.name, p.published, p.local]),
      [['hello', true, true]],
    );
    const one = await web.app.inject({ method: 'GET', url: `/api/formpacks/${'a'.repeat(12)}`, headers: { cookie } });
    const d = one.json() as FormpackDetail;
    assert.equal(d.id, 'a'.repeat(64));
    assert.deepEqual(d.manifest?.formfile, { name: 'hello', entrypoint: ['/srv/hello'] });
    // The measurement an instance must attest to, computed from the manifest as `form pack inspect` does.
    const expected = expectedMeasurement({
      cmdline: 'console=ttyS0',
      resources,
      artifacts: d.manifest?.artifacts as unknown as Parameters<typeof expectedMeasurement>[0]['artifacts'],
    });
    assert.equal(d.manifest?.measurement, `sha256:${expected.digest}`);
    assert.equal(expected.inputs.kernel, 'e'.repeat(64));
    assert.deepEqual(d.instances, [{ id: aliceInst, name: 'hello' }]);
    const bobs = await web.app.inject({ method: 'GET', url: `/api/formpacks/${'b'.repeat(64)}`, headers: { cookie } });
    assert.equal(bobs.statusCode, 404);
  });

  test('network: nodes with capacity, and load samples collected over time', async () => {
    await new Promise((r) => setTimeout(r, 200));
    const res = await web.app.inject({ method: 'GET', url: '/api/network', headers: { cookie } });
    const n = res.json() as NetworkInfo;
    assert.equal(n.nodes.length, 1);
    assert.equal(n.nodes[0]?.self, true);
    assert.equal(n.nodes[0]?.capacity.vcpu, 4);
    assert.deepEqual(n.nodes[0]?.used, resources, 'allocated = the running replica');
    assert.ok(n.samples.some((s) => s.cpuAllocated === 0.25));
    assert.ok(n.samples.length >= 2, `samples: ${n.samples.length}`);
    assert.ok(n.samples.every((s) => s.hostCpu !== null && s.hostCpu >= 0 && s.hostCpu <= 1));
  });

  test('static files: the app for its routes, nothing outside dist, security headers', async () => {
    const root = await web.app.inject({ method: 'GET', url: '/' });
    assert.equal(root.statusCode, 200);
    assert.match(root.body, /<title>dash<\/title>/);
    assert.match(String(root.headers['content-security-policy']), /default-src 'self'/);
    const deep = await web.app.inject({ method: 'GET', url: '/instances/abc' });
    assert.match(deep.body, /<title>dash/);
    const js = await web.app.inject({ method: 'GET', url: '/assets/app.js' });
    assert.match(String(js.headers['content-type']), /javascript/);
    for (const url of ['/../secret.txt', '/%2e%2e/secret.txt', '/assets/../../secret.txt']) {
      const r = await web.app.inject({ method: 'GET', url });
      assert.doesNotMatch(r.body, /do not serve/, url);
    }
    const api = await web.app.inject({ method: 'GET', url: '/api/nope', headers: { cookie } });
    assert.equal(api.statusCode, 404);
    assert.equal(api.json().error.code, 'NOT_FOUND');
  });

  test('sign out ends the session', async () => {
    const c = await signIn(web, alice);
    const out = await web.app.inject({ method: 'DELETE', url: '/api/session', headers: { cookie: c } });
    assert.equal(out.statusCode, 200);
    const me = await web.app.inject({ method: 'GET', url: '/api/session', headers: { cookie: c } });
    assert.equal(me.statusCode, 401);
  });
});

test('a node API that is down gives a clear error, not a crash', async () => {
  const web = await offlineDashboard({ upstreamTimeoutMs: 1000 });
  try {
    const cookie = await signIn(web, generateKeyPair());
    const res = await web.app.inject({ method: 'GET', url: '/api/instances', headers: { cookie } });
    assert.equal(res.statusCode, 503);
    const e = res.json().error;
    assert.equal(e.code, 'UNAVAILABLE');
    assert.match(e.message, /state API/);
    assert.match(e.message, /Cannot reach/);
    assert.ok(e.hint);
  } finally {
    await web.close();
  }
});
