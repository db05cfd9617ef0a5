import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { encodeCheckpoint } from '../src/checkpoint.ts';
import { FakeBackend } from '../src/fake-backend.ts';
import { ProcessManager } from '../src/manager.ts';
import { MemoryRuntimeStore } from '../src/memory-store.ts';
import type { RuntimeModule } from '../src/types.ts';
import { tmp } from './helpers.ts';
import { oneImageStore } from './one-image-store.ts';

// The process manager's logic (spawn, apply, checkpoints, rebuild after a container dies, restart,
// outbox) on the in-memory FakeBackend and MemoryRuntimeStore: no root, runc or Redis. service.test.ts
// runs the same paths against runc and Redis.

const logger = createLogger('silent');
const OWNER = '0xowner';
const IMAGE = { id: `sha256:${'cd'.repeat(32)}`, name: 'formation/fake:1' };
const dirs: string[] = [];
const managers: ProcessManager[] = [];

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

interface Rig {
  pm: ProcessManager;
  backend: FakeBackend;
  store: MemoryRuntimeStore;
  mod: RuntimeModule;
  dataDir: string;
}

async function rig(
  o: { store?: MemoryRuntimeStore; dataDir?: string; checkpointEvery?: number; monitorIntervalMs?: number } = {},
): Promise<Rig> {
  const dataDir = o.dataDir ?? tmp('fake-manager');
  if (!o.dataDir) dirs.push(dataDir);
  const store = o.store ?? new MemoryRuntimeStore();
  const backend = new FakeBackend();
  const pm = new ProcessManager({
    store: store,
    images: oneImageStore(join(dataDir, 'images'), IMAGE),
    logger,
    dataDir,
    runcRoot: join(dataDir, 'runc'),
    runc: '/nonexistent/runc', // the fake must be the only thing that runs containers
    backend,
    limits: { memoryMiB: 64, cpus: 1, pids: 16 },
    applyTimeoutMs: 500,
    checkpointEvery: o.checkpointEvery ?? 100,
    monitorIntervalMs: o.monitorIntervalMs ?? 0,
    nodeId: 'node-1',
    nodeUrl: 'http://127.0.0.1:1',
  });
  managers.push(pm);
  await pm.start();
  const mod = await pm.registerModule({
    ModuleFormat: 'web.vmdocker-js-ao.v0.1.0',
    Tags: [
      { name: 'Image-Name', value: IMAGE.name },
      { name: 'Image-ID', value: IMAGE.id },
    ],
  });
  return { pm, backend, store, mod, dataDir };
}

async function count(pm: ProcessManager, pid: string): Promise<number> {
  return Number((await pm.send(pid, { from: OWNER, action: 'Get', mode: 'dry-run' })).result.data);
}

describe('ProcessManager on the fake backend', () => {
  it('spawns a process: one container, spawn call, checkpoint 0, record stored', async () => {
    const { pm, backend, store, mod } = await rig();
    const p = await pm.spawn({ id: 'proc-a', module: mod.id, owner: OWNER, data: 'code' });
    assert.equal(backend.containers.length, 1);
    const c = backend.containers[0];
    assert.deepEqual(
      c?.calls.map((x) => x.path),
      ['/vmm/spawn', '/vmm/checkpoint'],
    );
    assert.match(p.container?.id ?? '', /^formrt-proc-a-[0-9a-f]{6}$/);
    assert.equal(p.container?.alive, true);
    assert.equal(p.checkpoint.sequence, 0);
    assert.match(p.checkpoint.sha256, /^[0-9a-f]{64}$/);
    assert.deepEqual(
      (await store.listProcesses()).map((r) => r.id),
      ['proc-a'],
    );
    await assert.rejects(pm.spawn({ id: 'proc-a', module: mod.id, owner: OWNER }), { code: 'CONFLICT' });
    await assert.rejects(pm.spawn({ module: 'nope', owner: OWNER }), { code: 'RUNTIME_MODULE_NOT_FOUND' });
  });

  it('a container that cannot start leaves no process behind', async () => {
    const { pm, backend, store, mod } = await rig();
    backend.failStarts = 1;
    await assert.rejects(pm.spawn({ id: 'p-nostart', module: mod.id, owner: OWNER }), { code: 'RUNTIME_CONTAINER' });
    assert.deepEqual(pm.listProcesses(), []);
    assert.deepEqual(await store.listProcesses(), []);
  });

  it('applies messages in order, logs them with results, refuses duplicates; dry runs change nothing', async () => {
    const { pm, store, mod } = await rig();
    await pm.spawn({ id: 'p-send', module: mod.id, owner: OWNER });
    const a = await pm.send('p-send', { from: OWNER, action: 'Inc', data: '5', itemId: 'm1' });
    assert.equal(a.sequence, 1);
    assert.equal(JSON.parse(a.result.data).count, 5);
    const dry = await pm.send('p-send', { from: OWNER, action: 'Inc', data: '100', mode: 'dry-run' });
    assert.equal(dry.sequence, 0);
    assert.equal(JSON.parse(dry.result.data).count, 105);
    const b = await pm.send('p-send', { from: OWNER, action: 'Inc', data: '2' });
    assert.equal(b.sequence, 2);
    assert.equal(await count(pm, 'p-send'), 7);
    const boom = await pm.send('p-send', { from: OWNER, action: 'Boom' });
    assert.equal(boom.result.error, 'kaboom');
    assert.equal(await count(pm, 'p-send'), 7);
    await assert.rejects(pm.send('p-send', { from: OWNER, action: 'Inc', itemId: 'm1' }), { code: 'CONFLICT' });
    assert.throws(() => pm.send('p-send', { from: OWNER, action: '' }), { code: 'BAD_REQUEST' });
    assert.equal(await store.lastSequence('p-send'), 3);
    const r = await pm.result('p-send', 'm1');
    assert.equal(r.sequence, 1);
    assert.equal(JSON.parse(r.result?.data ?? '').count, 5);
    assert.deepEqual(
      (await pm.results('p-send', 1, 10)).map((x) => x.sequence),
      [1, 2, 3],
    );
    assert.equal(pm.process('p-send').lastSequence, 3);
  });

  it('checkpoints every N messages and persists the recovery point', async () => {
    const { pm, store, mod } = await rig({ checkpointEvery: 3 });
    await pm.spawn({ id: 'p-every', module: mod.id, owner: OWNER });
    for (let i = 0; i < 4; i++) await pm.send('p-every', { from: OWNER, action: 'Inc' });
    assert.equal(pm.process('p-every').checkpoint.sequence, 3);
    const [rec] = await store.listProcesses();
    assert.equal(rec?.checkpoint.sequence, 3);
    assert.equal(rec?.checkpoint.sha256, pm.process('p-every').checkpoint.sha256);
  });

  it('restores a checkpoint (state and workspace); a corrupt or foreign one is refused and the state kept', async () => {
    const { pm, backend, mod } = await rig();
    await pm.spawn({ id: 'p-cp', module: mod.id, owner: OWNER });
    await pm.send('p-cp', { from: OWNER, action: 'Inc', data: '5' });
    const cp = await pm.checkpoint('p-cp');
    assert.equal(cp.sequence, 1);
    await pm.send('p-cp', { from: OWNER, action: 'Inc', data: '10' });
    const ws = () => readFileSync(join(backend.live()[0]?.workspaceDir ?? '', 'count.txt'), 'utf8');
    assert.equal(ws(), '15');
    await pm.restore('p-cp', { sha256: cp.sha256 });
    assert.equal(await count(pm, 'p-cp'), 5);
    assert.equal(ws(), '5', 'the workspace came back with the state');
    const blob = await pm.checkpointData('p-cp', cp.sha256);
    await assert.rejects(pm.restore('p-cp', { data: `${blob.slice(0, -8)}AAAAAAAA` }), {
      code: 'RUNTIME_CHECKPOINT_INVALID',
    });
    const foreign = encodeCheckpoint('other-proc', JSON.stringify({ format: 'formation-fake-process/1' }), '');
    await assert.rejects(pm.restore('p-cp', { data: foreign }));
    assert.equal(await count(pm, 'p-cp'), 5);
    const next = await pm.send('p-cp', { from: OWNER, action: 'Inc', data: '1' });
    assert.equal(next.sequence, 3, 'the sequence continues after a restore');
    assert.equal(JSON.parse(next.result.data).count, 6);
  });

  it('a container killed from outside is rebuilt from the last checkpoint with the log replayed', async () => {
    const { pm, backend, store, mod } = await rig({ checkpointEvery: 2 });
    await pm.spawn({ id: 'p-kill', module: mod.id, owner: OWNER });
    for (const d of ['1', '2', '3']) await pm.send('p-kill', { from: OWNER, action: 'Inc', data: d });
    const first = backend.live();
    assert.equal(first.length, 1);
    first[0]?.kill();
    assert.equal(pm.process('p-kill').container?.alive, false);
    const out = await pm.send('p-kill', { from: OWNER, action: 'Inc', data: '4' });
    assert.equal(JSON.parse(out.result.data).count, 10);
    const info = pm.process('p-kill');
    assert.equal(info.recoveries, 1);
    assert.equal(info.container?.alive, true);
    assert.notEqual(info.container?.id, first[0]?.id);
    const replayed = backend.live()[0]?.calls.filter((c) => c.path === '/vmm/apply') ?? [];
    assert.deepEqual(
      replayed.map((c) => (c.body as { meta: { sequence: number; mode: string } }).meta),
      [
        { ...(replayed[0]?.body as { meta: object }).meta, sequence: 3, mode: 'replay' },
        { ...(replayed[1]?.body as { meta: object }).meta, sequence: 4, mode: 'apply' },
      ],
      'only the message after checkpoint 2 is replayed',
    );
    assert.equal((await store.results('p-kill', 3, 3))[0]?.data, JSON.stringify({ count: 6 }));
  });

  it('the monitor replaces a dead container without waiting for a message', async () => {
    const { pm, backend, mod } = await rig({ monitorIntervalMs: 10 });
    await pm.spawn({ id: 'p-mon', module: mod.id, owner: OWNER });
    await pm.send('p-mon', { from: OWNER, action: 'Inc', data: '3' });
    backend.live()[0]?.kill();
    await until('the rebuild', () => pm.process('p-mon').recoveries === 1 && backend.live().length === 1, 2000, 5);
    assert.equal(await count(pm, 'p-mon'), 3);
  });

  it('a message that crashes its container twice is recorded as failed and skipped on replay', async () => {
    const { pm, backend, store, mod } = await rig();
    await pm.spawn({ id: 'p-crash', module: mod.id, owner: OWNER });
    await pm.send('p-crash', { from: OWNER, action: 'Inc', data: '2' });
    const out = await pm.send('p-crash', { from: OWNER, action: 'Crash' });
    assert.match(out.result.error ?? '', /crashed while applying this message/);
    assert.equal(out.sequence, 2);
    const [entry] = await store.entries('p-crash', 2, 2);
    assert.match(entry?.failed ?? '', /crashed/);
    assert.equal(await count(pm, 'p-crash'), 2);
    backend.live()[0]?.kill();
    const next = await pm.send('p-crash', { from: OWNER, action: 'Inc', data: '1' });
    assert.equal(JSON.parse(next.result.data).count, 3, 'the failed message was skipped on replay');
    assert.equal(backend.live().length, 1, 'every crashed container was cleaned up');
  });

  it('a process whose container cannot be rebuilt refuses the message instead of logging it', async () => {
    const { pm, backend, store, mod } = await rig();
    await pm.spawn({ id: 'p-down', module: mod.id, owner: OWNER });
    backend.live()[0]?.kill();
    backend.failStarts = 1;
    await assert.rejects(pm.send('p-down', { from: OWNER, action: 'Inc' }), { code: 'RUNTIME_CONTAINER' });
    assert.equal(await store.lastSequence('p-down'), 0);
    assert.equal((await pm.send('p-down', { from: OWNER, action: 'Inc' })).sequence, 1);
  });

  it('a restart rebuilds every process from the store and removes stale containers', async () => {
    const first = await rig({ checkpointEvery: 2 });
    await first.pm.spawn({ id: 'p-restart', module: first.mod.id, owner: OWNER });
    for (const d of ['1', '2', '4']) await first.pm.send('p-restart', { from: OWNER, action: 'Inc', data: d });
    await first.pm.close();
    assert.equal(first.backend.live().length, 0, 'close stops every container');
    const stale = join(first.dataDir, 'containers', 'formrt-left-behind');
    mkdirSync(stale, { recursive: true });
    const second = await rig({ store: first.store, dataDir: first.dataDir });
    assert.deepEqual(second.backend.staleRemoved, ['formrt-left-behind']);
    assert.equal(existsSync(stale), false);
    assert.equal(second.backend.live().length, 1);
    const info = second.pm.process('p-restart');
    assert.equal(info.lastSequence, 3);
    assert.equal(info.recoveries, 0);
    assert.equal(await count(second.pm, 'p-restart'), 7);
    assert.equal((await second.pm.send('p-restart', { from: OWNER, action: 'Inc' })).sequence, 4);
  });

  it('delivers an outbox: messages to local processes, replies, and spawns with a Spawned notice', async () => {
    const { pm, mod } = await rig();
    await pm.spawn({ id: 'p-out-a', module: mod.id, owner: OWNER });
    await pm.spawn({ id: 'p-out-b', module: mod.id, owner: OWNER });
    await pm.send('p-out-a', { from: OWNER, action: 'Send', data: '4', params: { Target: 'p-out-b' } });
    await pm.send('p-out-a', { from: OWNER, action: 'Send', data: '1', params: { Target: 'elsewhere' } });
    await pm.settled();
    assert.equal(await count(pm, 'p-out-b'), 4);
    const got = await pm.result('p-out-b', '1');
    assert.equal(got.entry.from, 'p-out-a');
    assert.equal(got.entry.meta.params['From-Process'], 'p-out-a');

    // b's reply (Reply=yes) comes back to a as an Action=Count message
    await pm.send('p-out-b', { from: 'p-out-a', action: 'Inc', params: { Reply: 'yes' } });
    await pm.settled();
    const aLog = await pm.results('p-out-a', 1, 10);
    assert.equal(aLog.length, 3, 'a got the reply as its third message');
    assert.equal((await pm.result('p-out-a', '3')).entry.meta.action, 'Count');
    assert.equal((await pm.result('p-out-a', '3')).entry.meta.data, 'count=5');

    await pm.send('p-out-a', { from: OWNER, action: 'Spawn', data: 'child code', params: { Module: mod.id } });
    await pm.settled();
    const child = pm.listProcesses().find((p) => !['p-out-a', 'p-out-b'].includes(p.id));
    assert.ok(child, 'the child process exists');
    assert.equal(child.owner, 'p-out-a');
    const notice = await pm.result('p-out-a', '5');
    assert.equal(notice.entry.meta.action, 'Spawned');
    assert.equal(notice.entry.meta.params.Process, child.id);
  });

  it('terminate stops the container and forgets the process', async () => {
    const { pm, backend, store, mod } = await rig();
    await pm.spawn({ id: 'p-term', module: mod.id, owner: OWNER });
    await pm.send('p-term', { from: OWNER, action: 'Inc' });
    const dir = backend.containers[0]?.workspaceDir ?? '';
    await pm.terminate('p-term');
    assert.equal(backend.live().length, 0);
    assert.equal(existsSync(dir), false, 'its bundle is gone');
    assert.deepEqual(await store.listProcesses(), []);
    assert.equal(await store.lastSequence('p-term'), 0);
    assert.throws(() => pm.process('p-term'), { code: 'RUNTIME_PROCESS_NOT_FOUND' });
  });
});
