import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { ApiClient, createLogger } from '@formation/service';
import { createDataItem } from '../src/ans104.ts';
import { AoClient, RuntimeClient } from '../src/client.ts';
import { loadRuntimeConfig, type RuntimeConfig } from '../src/config.ts';
import { buildJsRuntimeImage, jsRuntimeModule } from '../src/js-image.ts';
import { createRuntimeService, type RuntimeService } from '../src/service.ts';
import { CACHE_DIR, COUNTER_SRC, integrationSkip, TestRedis, tinyArchive, tmp } from './helpers.ts';

const skip = await integrationSkip(true);
const logger = createLogger('silent');

describe('runtime service: Redis registry, HTTP API, AO endpoints, recovery', { skip }, () => {
  const redis = skip ? undefined : new TestRedis();
  let dataDir: string;
  let config: RuntimeConfig;
  let svc: RuntimeService;
  let url: string;
  let rt: RuntimeClient;
  let moduleId: string;
  let imageId: string;
  const key = generateKeyPair();

  async function startService(): Promise<void> {
    svc = await createRuntimeService({ config, logger });
    await svc.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = svc.app.server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    rt = new RuntimeClient(url, key);
  }

  before(async () => {
    await redis?.start();
    dataDir = tmp('svc');
    config = loadRuntimeConfig({
      flags: {
        port: ':0',
        redisURL: redis?.url,
        nodeName: 'test-node',
        nodeURL: 'http://127.0.0.1:8080',
        prvKey: `0x${'11'.repeat(32)}`,
        dataDir,
        runcRoot: join(dataDir, 'runc'),
        // above the ~0.6 s the Hog handler needs to exhaust its memory (so the crash, not the time limit, ends it)
        applyTimeoutMs: 3000,
        checkpointEvery: 3,
        monitorIntervalMs: 200,
        memoryMiB: 192,
        admins: [key.address],
      },
    });
    await startService();
    const built = await buildJsRuntimeImage(CACHE_DIR);
    imageId = (await rt.importImage(built.archive, built.imageId)).id;
    assert.equal(imageId, built.imageId);
    moduleId = (await rt.addModule(jsRuntimeModule(imageId))).id;
  });

  after(async () => {
    await svc?.close().catch(() => undefined);
    await redis?.stop();
    if (redis) rmSync(redis.dir, { recursive: true, force: true });
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses invalid modules through the API, naming what is missing', async () => {
    await assert.rejects(
      rt.addModule({ ModuleFormat: 'web.vmdocker-x', Tags: [{ name: 'Image-Name', value: 'x:1' }] }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'RUNTIME_MODULE_INVALID');
        assert.match(e.message, /tag Image-ID is missing/);
        return true;
      },
    );
    await assert.rejects(
      rt.addModule({ ModuleFormat: 'aos-2', Tags: jsRuntimeModule(imageId).Tags }),
      /must start with "web\.vmdocker-"/,
    );
    const list = await rt.modules();
    assert.deepEqual(
      list.modules.map((m) => m.id),
      [moduleId],
    );
  });

  it('refuses to spawn when the image is missing or does not match Image-ID, before any container starts', async () => {
    const absent = await rt.addModule({
      ModuleFormat: 'web.vmdocker-x.v1',
      Tags: [
        { name: 'Image-Name', value: 'absent:1' },
        { name: 'Image-ID', value: `sha256:${'c'.repeat(64)}` },
      ],
    });
    await assert.rejects(
      rt.spawn(absent.id, ''),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_NOT_FOUND',
    );
    // an image in the store whose content was altered after import
    const w = tmp('tiny');
    const { archive, imageId: tinyId } = await tinyArchive(w, { repoTag: 'tiny:1' });
    await rt.importImage(archive);
    writeFileSync(join(dataDir, 'images', tinyId.slice(7), 'config.json'), '{"config":{"Cmd":["/evil"]}}');
    const tampered = await rt.addModule({
      ModuleFormat: 'web.vmdocker-tiny.v1',
      Tags: [
        { name: 'Image-Name', value: 'tiny:1' },
        { name: 'Image-ID', value: tinyId },
      ],
    });
    await assert.rejects(
      rt.spawn(tampered.id, ''),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_IMAGE_INVALID' && /hashes to/.test(e.message),
    );
    assert.deepEqual(readdirSync(join(dataDir, 'containers')), [], 'no container was started');
    rmSync(w, { recursive: true, force: true });
  });

  it('answers a message to an unknown process with 404 (API and AO)', async () => {
    await assert.rejects(
      rt.send('no-such-process', { action: 'Inc' }),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_PROCESS_NOT_FOUND',
    );
    await assert.rejects(
      rt.result('no-such-process', 1),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_PROCESS_NOT_FOUND',
    );
    const ao = new AoClient(url, key);
    await assert.rejects(
      ao.message({ process: Buffer.alloc(32, 9).toString('base64url'), tags: [{ name: 'Action', value: 'Inc' }] }),
      /Cannot find process/,
    );
  });

  let pid: string;
  it('spawns, applies messages, reads results; a throwing handler is a result', async () => {
    const p = await rt.spawn(moduleId, COUNTER_SRC);
    pid = p.id;
    assert.match(pid, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(p.owner, key.address);
    assert.equal(p.container?.alive, true);
    // the default config: a user namespace whose root is an unprivileged host uid, and seccomp
    const hostPid = p.container?.hostPid ?? 0;
    assert.match(readFileSync(`/proc/${hostPid}/uid_map`, 'utf8'), /^\s*0\s+1000000000\s+65536$/m);
    assert.match(readFileSync(`/proc/${hostPid}/status`, 'utf8'), /^Seccomp:\s+2$/m);
    const r1 = await rt.send(pid, { action: 'Inc', data: '4' });
    assert.equal(r1.sequence, 1);
    assert.equal(JSON.parse(r1.result.data).count, 4);
    const r2 = await rt.send(pid, { action: 'Boom' });
    assert.equal(r2.result.error, 'kaboom');
    const r3 = await rt.send(pid, { action: 'Inc', data: '1', params: { Reply: 'yes' } });
    assert.deepEqual(r3.result.messages, [
      { target: key.address, action: 'Count', data: 'count=5', tags: { Action: 'Count' } },
    ]);
    assert.equal((await rt.result(pid, 2)).result?.error, 'kaboom');
    assert.equal((await rt.result(pid, r3.itemId)).sequence, 3);
    const dry = await rt.send(pid, { action: 'Inc', data: '100', mode: 'dry-run' });
    assert.equal(dry.sequence, 0);
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '5');
  });

  it('only admins change images and modules; only the owner checkpoints, restores or terminates', async () => {
    const stranger = new RuntimeClient(url, generateKeyPair());
    const forbidden = (e: Error & { code?: string }) => e.code === 'AUTH_FORBIDDEN';
    await assert.rejects(stranger.addModule(jsRuntimeModule(imageId)), forbidden);
    await assert.rejects(stranger.importImage('/etc/passwd'), forbidden);
    await assert.rejects(stranger.checkpoint(pid), forbidden);
    await assert.rejects(stranger.restore(pid, { sha256: 'a'.repeat(64) }), forbidden);
    await assert.rejects(stranger.terminate(pid), forbidden);
    // anyone may message a process (as in AO); the handler sees who sent it
    const r = await stranger.send(pid, { action: 'Get' });
    assert.equal(r.result.data, '5');
  });

  it('checkpoint and restore through the API; a corrupt checkpoint is refused and the state kept', async () => {
    const cp = await rt.checkpoint(pid);
    assert.match(cp.sha256, /^[0-9a-f]{64}$/);
    assert.equal((await rt.checkpointData(pid, cp.sha256)).processId, pid, 'the owner reads its checkpoint');
    await assert.rejects(
      new RuntimeClient(url, generateKeyPair()).checkpointData(pid, cp.sha256),
      (e: Error & { code?: string }) => e.code === 'AUTH_FORBIDDEN',
    );
    assert.ok(cp.size > 0);
    await rt.send(pid, { action: 'Inc', data: '10' });
    await assert.rejects(
      rt.restore(pid, { data: '{"format":"formation-runtime-checkpoint/1","processId":"x"' }),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_CHECKPOINT_INVALID',
    );
    await assert.rejects(
      rt.restore(pid, { sha256: 'f'.repeat(64) }),
      (e: Error & { code?: string }) => e.code === 'RUNTIME_CHECKPOINT_INVALID',
    );
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '15');
    await rt.restore(pid, { sha256: cp.sha256 });
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '5');
  });

  it('detects a container killed from outside and restores it from the last checkpoint plus the log', async () => {
    for (let i = 0; i < 4; i++) await rt.send(pid, { action: 'Inc', data: '1' });
    const before = await rt.process(pid);
    assert.ok(
      before.lastSequence > before.checkpoint.sequence,
      'some messages are after the checkpoint (replay needed)',
    );
    const hostPid = before.container?.hostPid;
    assert.ok(hostPid);
    process.kill(hostPid, 'SIGKILL');
    await until(
      'the process to be rebuilt',
      async () => {
        const p = await rt.process(pid);
        return p.recoveries === 1 && p.container?.alive === true;
      },
      15_000,
    );
    const after = await rt.process(pid);
    assert.notEqual(after.container?.hostPid, hostPid);
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '9');
  });

  it('a message that kills its container every time (memory limit) becomes an error result; the process lives on', async () => {
    const before = await rt.process(pid);
    const r = await rt.send(pid, { action: 'Hog' });
    assert.match(r.result.error ?? '', /crashed while applying this message/);
    const after = await rt.process(pid);
    assert.ok(after.recoveries >= before.recoveries + 2, 'rebuilt after each crash');
    assert.equal(after.container?.alive, true);
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '9');
    assert.match((await rt.result(pid, r.sequence)).result?.error ?? '', /crashed/);
  });

  it('a node restart loses no process', async () => {
    const before = await rt.process(pid);
    await svc.close();
    await startService();
    const after = await rt.process(pid);
    assert.equal(after.lastSequence, before.lastSequence);
    assert.equal(after.container?.alive, true);
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, '9');
  });

  it('keeps working when Redis restarts under load, and loses nothing', async () => {
    const start = (await rt.process(pid)).lastSequence;
    const N = 60;
    const sent: Array<{ sequence: number; count: number; ms: number }> = [];
    const load = (async () => {
      for (let i = 0; i < N; i++) {
        const t0 = Date.now();
        const r = await rt.send(pid, { action: 'Inc', data: '1' });
        sent.push({ sequence: r.sequence, count: JSON.parse(r.result.data).count as number, ms: Date.now() - t0 });
      }
    })();
    await until('some messages to go through', () => sent.length >= 10, 15_000);
    await redis?.stop();
    await new Promise((r) => setTimeout(r, 400));
    await redis?.start();
    await load;
    assert.ok(
      Math.max(...sent.map((s) => s.ms)) >= 300,
      'a message waited for Redis to come back (the outage hit the load)',
    );
    assert.deepEqual(
      sent.map((s) => s.sequence),
      Array.from({ length: N }, (_, i) => start + i + 1),
      'sequences contiguous',
    );
    assert.equal(sent.at(-1)?.count, 9 + N);
    // everything is in Redis: a fresh node rebuilds the same process and every result is readable
    await svc.close();
    await startService();
    assert.equal((await rt.process(pid)).lastSequence, start + N + 0);
    for (const s of [start + 1, start + N / 2, start + N])
      assert.ok((await rt.result(pid, s)).result, `result ${s} kept`);
    assert.equal((await rt.send(pid, { action: 'Get' })).result.data, String(9 + N));
  });

  it('speaks AO: scheduler = node id, spawn, message, result, dry-run', async () => {
    const ao = new AoClient(url, key);
    const sched = await ao.scheduler();
    assert.equal(sched.Address, svc.nodeId);
    const aoPid = await ao.spawn({ module: moduleId, scheduler: svc.nodeId, data: COUNTER_SRC });
    assert.equal((await rt.process(aoPid)).owner, key.address, 'the ANS-104 signer owns the process');
    await assert.rejects(ao.spawn({ module: moduleId, scheduler: '0xsomeoneelse', data: '' }), /is not this node/);
    const mid = await ao.message({
      process: aoPid,
      tags: [
        { name: 'Action', value: 'Inc' },
        { name: 'Reply', value: 'yes' },
      ],
      data: '3',
    });
    const res = await ao.result({ process: aoPid, message: mid });
    assert.equal((await rt.result(aoPid, mid)).sequence, 1, 'the data item id is the message id');
    assert.equal(res.Error, undefined);
    assert.deepEqual(res.Messages, [
      { Target: key.address, Data: 'count=3', Tags: [{ name: 'Action', value: 'Count' }] },
    ]);
    assert.match(typeof res.Output === 'string' ? res.Output : res.Output.data, /inc to 3/);
    const dry = await ao.dryrun({ process: aoPid, tags: [{ name: 'Action', value: 'Inc' }], data: '50' });
    assert.match(typeof dry.Output === 'string' ? dry.Output : dry.Output.data, /inc to 53/);
    const got = await ao.dryrun({ process: aoPid, tags: [{ name: 'Action', value: 'Get' }] });
    assert.match(typeof got.Output === 'string' ? got.Output : got.Output.data, /^3$/m, 'dry run kept no state');
    // the owner is the signer: claiming another owner is refused, unsigned items too, and dry runs cannot Eval
    await assert.rejects(
      new ApiClient(url, generateKeyPair()).post('/', {
        Owner: key.address,
        Target: aoPid,
        Tags: [
          { name: 'Type', value: 'Message' },
          { name: 'Action', value: 'Eval' },
        ],
        Data: 'State.count = 0',
      }),
      (e: Error & { code?: string }) => e.code === 'AUTH_FORBIDDEN',
    );
    await assert.rejects(
      new ApiClient(url).request(
        'POST',
        '/',
        { Target: aoPid, Tags: [{ name: 'Action', value: 'Inc' }] },
        { sign: false },
      ),
      (e: Error & { code?: string }) => e.code === 'AUTH_MISSING',
    );
    // an altered binary data item is refused
    const item = createDataItem(key, {
      target: aoPid,
      tags: [
        { name: 'Type', value: 'Message' },
        { name: 'Action', value: 'Inc' },
      ],
      data: '1',
    });
    item[item.length - 1] = 0x32;
    const res2 = await fetch(`${url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: item,
    });
    assert.equal(res2.status, 401);
    assert.equal(((await res2.json()) as { error: { code: string } }).error.code, 'AUTH_BAD_SIGNATURE');
    await assert.rejects(
      ao.dryrun({ process: aoPid, tags: [{ name: 'Action', value: 'Eval' }], data: 'State.count' }),
      /Cannot dry-run Eval/,
    );
    const boom = await ao.result({
      process: aoPid,
      message: await ao.message({ process: aoPid, tags: [{ name: 'Action', value: 'Boom' }] }),
    });
    assert.equal(boom.Error, 'kaboom');
  });

  it('cleans up its containers on close', async () => {
    await svc.close();
    assert.deepEqual(readdirSync(join(dataDir, 'containers')), []);
    assert.equal(existsSync(join(dataDir, 'runc', readdirSync(join(dataDir, 'runc'))[0] ?? 'none')), false);
    await startService();
  });
});
