import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import type { LogsInfo, ReplicaMetricsInfo } from '@formation/interface/web-api';
import { vmNameFor } from '@formation/scheduler';
import { setApiIdentity } from '@formation/service';
import type { StateStore } from '@formation/state';
import { createVmmService, type VmmService } from '@formation/vmm';
import { MemoryDriver, memoryFormpack } from '@formation/vmm/memory';
import { memoryVmmConfig, SMALL_CAPACITY } from '@formation/vmm/testing';
import { deriveRates, formatRate } from '../src/app/telemetry.ts';
import type { WebService } from '../src/index.ts';
import { inertLine } from '../src/server/inert.ts';
import { type Dashboard, formnetOf, listen, logger, nodeStore, signIn, startDashboard } from './fixture.ts';

// The instance page's logs stream and metrics, through the BFF against a real VMM API (memory driver:
// real routes, auth and log collector over a simulated guest) and a real state service.

const ELOG = '/var/log/form/entrypoint.log';

describe('dashboard: logs stream and metrics of an instance', () => {
  const alice = generateKeyPair();
  const bob = generateKeyPair();
  const node = generateKeyPair();
  let tmp: string;
  let store: StateStore;
  let dash: Dashboard;
  let vmm: VmmService;
  let web: WebService;
  let aliceInst = '';
  let bobInst = '';
  let gpuInst = '';
  let vmId = '';

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fdg-web-telemetry-'));
    mkdirSync(join(tmp, 'images'));
    mkdirSync(join(tmp, 'dist'));
    writeFileSync(join(tmp, 'dist', 'index.html'), '<!doctype html>');
    const fp = memoryFormpack(join(tmp, 'formpacks'), { id: 'd'.repeat(64) });
    store = nodeStore(node);
    const resources = { vcpu: 1, memMiB: 256, diskGiB: 1 };
    aliceInst = store.author(alice, 'instance.create', { formpackId: fp, name: 'hello', replicas: 1, resources }).body
      .id as string;
    gpuInst = store.author(alice, 'instance.create', {
      formpackId: fp,
      name: 'trainer',
      replicas: 1,
      resources,
      gpu: { count: 1 },
    }).body.id as string;
    bobInst = store.author(bob, 'instance.create', { formpackId: fp, name: 'bobs', replicas: 1, resources }).body
      .id as string;
    vmm = await createVmmService({
      config: memoryVmmConfig(tmp, { stopTimeoutMs: 2000, capacity: SMALL_CAPACITY }),
      logger,
      driver: new MemoryDriver(),
      logs: { pollMs: 0 },
      access: { operators: [node.publicKey] },
    });
    setApiIdentity(vmm.app, node.publicKey);
    vmId = (
      await vmm.manager.create({ formpack: fp, name: vmNameFor({ id: aliceInst, name: 'hello' }) }, alice.address)
    ).id;
    await vmm.manager.create({ formpack: fp, name: vmNameFor({ id: bobInst, name: 'bobs' }) }, bob.address);
    dash = await startDashboard({
      store,
      vmm: await listen(vmm.app),
      formnet: await formnetOf(node),
      web: { staticDir: join(tmp, 'dist'), nodeKey: node },
    });
    web = dash.web;
  });

  after(async () => {
    await dash?.close();
    await vmm?.manager.destroyAll().catch(() => undefined);
    await vmm?.close({ stopVms: true });
    store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const get = (url: string, cookie?: string) =>
    web.app.inject({ method: 'GET', url, headers: cookie ? { cookie } : {} });

  test("the owner's page gets the app's lines (inert), then only new ones after the cursor", async () => {
    const cookie = await signIn(web, alice);
    // An app that prints an escape sequence (recolour), a bell and a bidi override.
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', `echo hello-from-app >> ${ELOG}`]);
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', `echo "x\u001b[31mred\u0007\u202eevil" >> ${ELOG}`]);
    const r = await get(`/api/instances/${aliceInst}/logs`, cookie);
    assert.equal(r.statusCode, 200, r.body);
    const body = r.json() as LogsInfo;
    assert.deepEqual(
      body.entries.map((e) => e.line),
      ['hello-from-app', 'x\ufffd[31mred\ufffd\ufffdevil'],
    );
    assert.equal(body.entries[0]?.src, 'entrypoint');
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', `echo second >> ${ELOG}`]);
    const again = (await get(`/api/instances/${aliceInst}/logs?after=${body.lastSeq}`, cookie)).json() as LogsInfo;
    assert.deepEqual(
      again.entries.map((e) => e.line),
      ['second'],
    );
  });

  test("another developer's instance is not found; no session is 401; a bad cursor is 400", async () => {
    const cookie = await signIn(web, bob);
    const r = await get(`/api/instances/${aliceInst}/logs`, cookie);
    assert.equal(r.statusCode, 404);
    assert.equal(r.body.includes('hello-from-app'), false);
    assert.equal((await get(`/api/instances/${aliceInst}/metrics`, cookie)).statusCode, 404);
    assert.equal((await get(`/api/instances/${aliceInst}/logs`)).statusCode, 401);
    const own = await get(`/api/instances/${bobInst}/logs`, cookie);
    assert.equal(own.statusCode, 200, own.body);
    assert.equal((await get(`/api/instances/${bobInst}/logs?after=-1`, cookie)).statusCode, 400);
  });

  test('a GPU instance with no GPU node is PENDING with the reason on its page, as the CLI prints it', async () => {
    const cookie = await signIn(web, alice);
    const r = await get(`/api/instances/${gpuInst}`, cookie);
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.json().status, 'PENDING');
    assert.match(
      r.json().reason,
      /^no healthy node has 1 GPU that can be passed through to a VM \(VFIO\); no node reports a GPU/,
    );
  });

  test('an instance with no replica on this node: logs, metrics and console are VM_NOT_FOUND with what to do', async () => {
    const cookie = await signIn(web, alice);
    for (const what of ['logs', 'metrics', 'console']) {
      const r = await get(`/api/instances/${gpuInst}/${what}`, cookie);
      assert.equal(r.statusCode, 404, r.body);
      assert.equal(r.json().error.code, 'VM_NOT_FOUND');
      assert.equal(r.json().error.message, 'No replica of trainer runs on this node');
      assert.match(
        r.json().error.hint,
        what === 'console' ? /dashboard of a node that runs it/ : /`form logs trainer`/,
      );
    }
    const disk = await get(`/api/instances/${gpuInst}/disk`, cookie);
    assert.deepEqual(disk.json(), { state: 'unknown', detail: 'no replica of it runs on this node' });
  });

  test('metrics: a sample of the local replica (CPU seconds and memory of its process)', async () => {
    const cookie = await signIn(web, alice);
    const r = await get(`/api/instances/${aliceInst}/metrics`, cookie);
    assert.equal(r.statusCode, 200, r.body);
    const m = r.json() as ReplicaMetricsInfo;
    assert.equal(m.instanceId, aliceInst);
    assert.equal(m.memMiB, 256);
    assert.equal(typeof m.cpuSeconds, 'number');
    assert.ok(Array.isArray(m.disks));
  });
});

test('deriveRates: CPU %, disk and network bytes/s between samples; a counter that went back gives null', () => {
  const s = (at: number, cpu: number, rd: number, rx: number): ReplicaMetricsInfo => ({
    instanceId: 'i',
    vmName: 'v',
    at,
    state: 'running',
    cpuSeconds: cpu,
    rssBytes: 200 * 1048576,
    memMiB: 256,
    disks: [{ disk: 'root', readBytes: rd, writtenBytes: 0 }],
    diskAllocatedBytes: 1,
    net: { rxBytes: rx, txBytes: 0, rxPackets: 0, txPackets: 0 },
  });
  const p = deriveRates([s(0, 10, 0, 0), s(2000, 11, 4096, 2048), s(4000, 1, 8192, 1024), s(4000, 2, 0, 0)]);
  assert.equal(p.length, 2, 'a sample at the same time is skipped');
  assert.deepEqual(p[0], {
    at: 2000,
    cpuPercent: 50,
    rssMiB: 200,
    memMiB: 256,
    diskReadBps: 2048,
    diskWriteBps: 0,
    netRxBps: 1024,
    netTxBps: 0,
  });
  assert.equal(p[1]?.cpuPercent, null);
  assert.equal(p[1]?.netRxBps, null);
  assert.equal(formatRate(null), 'n/a');
  assert.equal(formatRate(1536), '1.5 KiB/s');
  assert.equal(formatRate(3 * 1048576), '3.0 MiB/s');
});

test('inertLine: control characters, escape sequences and bidi controls become U+FFFD; tabs and text stay', () => {
  assert.equal(inertLine('\u001b[31mred\u001b[0m\tok'), '\ufffd[31mred\ufffd[0m\tok');
  assert.equal(inertLine('a\u202eb\u2066c\u200fd\u009be'), 'a\ufffdb\ufffdc\ufffdd\ufffde');
  assert.equal(inertLine('héllo ✓'), 'héllo ✓');
});
