import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair, type KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import type { GuestAgent } from '../src/driver.ts';
import { LogCollector, type LogTarget, splitLines } from '../src/log-collector.ts';
import { LogStore } from '../src/log-store.ts';
import { MemoryDriver } from '../src/memory-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import type { VmView } from '../src/types.ts';
import { signedCall } from './api-cases.ts';
import { memoryVmmConfig, SMALL_CAPACITY } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

// Guest logs: the on-disk store (rotation, cap, seq across reopen), the line splitter, and the whole
// path — guest file → guest agent → collector → store → GET /vms/:id/logs — on the memory driver
// (a real process per VM, a simulated guest file system). The real guest is in logs.e2e.test.ts.

describe('LogStore', () => {
  const dir = mkdtempSync('/tmp/fvmm-logstore-');
  after(() => rmSync(dir, { recursive: true, force: true }));
  const line = (i: number) => ({
    t: 1000 + i,
    stream: 'app' as const,
    src: 'entrypoint',
    line: `line ${i} ${'x'.repeat(80)}`,
  });

  test('rotates into a second file and never holds more than 2 × the cap; seq keeps counting', () => {
    const s = new LogStore({ dir: `${dir}/a`, maxFileBytes: 4096 });
    for (let i = 0; i < 200; i++) s.append('vm1', [line(i)]);
    assert.ok(s.bytes('vm1') <= 2 * 4096, `${s.bytes('vm1')} bytes`);
    const got = s.read('vm1');
    assert.equal(got.at(-1)?.line.startsWith('line 199 '), true);
    assert.equal(got.at(-1)?.seq, 200);
    assert.ok(got.length < 200 && got.length > 30, `${got.length} kept`);
    for (let i = 1; i < got.length; i++) assert.equal(got[i]?.seq, (got[i - 1]?.seq ?? 0) + 1);
    assert.equal(statSync(`${dir}/a`).mode & 0o777, 0o700);
  });

  test('a reopened store continues the sequence; reads by seq, time and limit', () => {
    const a = new LogStore({ dir: `${dir}/b` });
    a.append('vm1', [line(1), line(2), line(3)]);
    const b = new LogStore({ dir: `${dir}/b` });
    const [e] = b.append('vm1', [line(4)]);
    assert.equal(e?.seq, 4);
    assert.deepEqual(
      b.read('vm1', { afterSeq: 2 }).map((x) => x.seq),
      [3, 4],
    );
    assert.deepEqual(
      b.read('vm1', { since: 1003 }).map((x) => x.seq),
      [3, 4],
    );
    assert.deepEqual(
      b.read('vm1', { limit: 1 }).map((x) => x.seq),
      [4],
    );
    b.remove('vm1');
    assert.deepEqual(b.read('vm1'), []);
    assert.deepEqual(b.ids(), []);
  });

  test('a path-like VM id is refused with a coded error and writes nothing', () => {
    const s = new LogStore({ dir: `${dir}/c` });
    assert.throws(() => s.append('../escape', [line(1)]), { code: 'BAD_REQUEST' });
    assert.equal(existsSync(`${dir}/escape`), false);
  });
});

describe('splitLines', () => {
  const b = (s: string) => Buffer.from(s);
  for (const [name, input, full, lines, used] of [
    ['complete lines', 'a\nb\n', false, ['a', 'b'], 4],
    ['a partial tail waits', 'a\nb', false, ['a'], 2],
    ['nothing complete', 'abc', false, [], 0],
    ['a full chunk without newline is one line', 'abc', true, ['abc'], 3],
    ['a full chunk keeps its tail as a line', 'a\nbc', true, ['a', 'bc'], 4],
    ['CRLF', 'a\r\n', false, ['a'], 3],
    ['empty', '', false, [], 0],
  ] as const) {
    test(name, () => assert.deepEqual(splitLines(b(input), full), { lines: [...lines], used }));
  }
});

/** The view of running VM `id`, as the manager lists it. */
const runningVm = (id: string) => ({ id, state: 'running', ready: true, startedAt: 't0' }) as VmView;

/**
 * Run `fn` with a collector of the entrypoint log of the VMs `target` lists (no timer: `fn` collects)
 * into a fresh store (`opts`: its file cap, the read size); the store's directory goes after.
 */
async function withCollector(
  target: LogTarget,
  opts: { maxFileBytes?: number; chunkBytes?: number },
  fn: (c: LogCollector, store: LogStore) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync('/tmp/fvmm-logcol-');
  try {
    const store = new LogStore({ dir, maxFileBytes: opts.maxFileBytes });
    const c = new LogCollector({
      target,
      store,
      logger: createLogger('silent'),
      pollMs: 0,
      chunkBytes: opts.chunkBytes,
      sources: [{ src: 'entrypoint', stream: 'app', path: '/var/log/form/entrypoint.log' }],
    });
    await fn(c, store);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('LogCollector', () => {
  test('a burst of requests for one VM costs at most two reads of each guest file, and all see the lines', async () => {
    let reads = 0;
    const file = Buffer.from('one\ntwo\n');
    const vm = runningVm('vm1');
    const agent = {
      readRange: async (_path: string, offset: number, max: number) => {
        reads++;
        await new Promise((r) => setTimeout(r, 20));
        return { data: file.subarray(offset, offset + max), size: file.length };
      },
    } as unknown as GuestAgent;
    await withCollector({ list: () => [vm], agent: () => agent }, {}, async (c, store) => {
      await Promise.all(Array.from({ length: 50 }, () => c.collectVm(vm)));
      assert.ok(reads <= 2, `${reads} reads`);
      assert.deepEqual(
        store.read('vm1').map((e) => e.line),
        ['one', 'two'],
      );
    });
  });
});

describe('LogCollector when a VM goes away mid-round', () => {
  test('a VM destroyed between the list and the read ends nothing: the round resolves, the next VM is read', async () => {
    const file = Buffer.from('still here\n');
    const agent = {
      readRange: async (_p: string, offset: number, max: number) => ({
        data: file.subarray(offset, offset + max),
        size: file.length,
      }),
    } as unknown as GuestAgent;
    const target = {
      list: () => [runningVm('vm-gone'), runningVm('vm2')],
      agent: (id: string) => {
        // What the manager does for a VM deleted meanwhile (this threw out of the timer and ended formationd).
        if (id === 'vm-gone') throw new FormError('VM_NOT_FOUND', `Cannot find VM ${id}`);
        return agent;
      },
    };
    await withCollector(target, {}, async (c, store) => {
      await c.collect();
      assert.deepEqual(
        store.read('vm2').map((e) => e.line),
        ['still here'],
      );
    });
  });
});

describe('LogCollector against a hostile guest agent', () => {
  test('an agent that answers with far more than asked (and a lying size) fills neither the store nor the CPU', async () => {
    const flood = Buffer.from('x\n'.repeat(4 * 1024 * 1024)); // 8 MiB of 2-byte lines per read
    const agent = { readRange: async () => ({ data: flood, size: 2 ** 52 }) } as unknown as GuestAgent;
    const target = { list: () => [runningVm('vm1')], agent: () => agent };
    await withCollector(target, { maxFileBytes: 256 * 1024, chunkBytes: 64 * 1024 }, async (c, store) => {
      await c.collect();
      const cursor = store.cursors('vm1').entrypoint;
      assert.ok(cursor && cursor.offset <= 4 * 64 * 1024, `cursor at ${cursor?.offset}`);
      assert.ok(store.bytes('vm1') <= 2 * 256 * 1024, `${store.bytes('vm1')} bytes stored`);
      assert.ok(store.read('vm1').length > 0);
    });
  });
});

describe('guest logs over the VMM API (memory driver)', () => {
  let tmp: string;
  let vmm: VmmService;
  let vmId = '';
  const alice = generateKeyPair();
  const mallory = generateKeyPair();
  const ELOG = '/var/log/form/entrypoint.log';

  const call = signedCall(() => vmm, alice);
  const get = (url: string, key: KeyPair | null = alice) => call('GET', url, undefined, key);
  const post = (url: string, body: unknown) => call('POST', url, body);
  const print = (text: string) => vmm.manager.exec(vmId, '/bin/sh', ['-c', `echo ${text} >> ${ELOG}`]);
  const lines = (body: { entries: Array<{ line: string }> }) => body.entries.map((e) => e.line);
  /** A VMM service on `tmp` collecting guest logs (no timer: a read collects); a second one re-attaches. */
  const startVmm = () =>
    createVmmService({
      config: memoryVmmConfig(tmp, { stopTimeoutMs: 2000, capacity: SMALL_CAPACITY }),
      logger: createLogger('silent'),
      driver: new MemoryDriver(),
      logs: { pollMs: 0 },
    });

  before(async () => {
    tmp = mkdtempSync('/tmp/fvmm-logs-');
    mkdirSync(`${tmp}/images`);
    const fp = memoryFormpack(`${tmp}/formpacks`, { id: 'd'.repeat(64) });
    vmm = await startVmm();
    const r = await post('/vms', { formpack: fp, name: 'web-1', wait: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    vmId = r.body.id;
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  test('a line the app printed is served to the owner, labelled; a second read adds only new lines', async () => {
    await print('hello-from-app');
    const r = await get(`/vms/${vmId}/logs`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(lines(r.body), ['hello-from-app']);
    assert.equal(r.body.entries[0].stream, 'app');
    assert.equal(r.body.entries[0].src, 'entrypoint');
    await print('second');
    const again = await get(`/vms/${vmId}/logs?after=${r.body.lastSeq}`);
    assert.deepEqual(lines(again.body), ['second']);
    assert.deepEqual(lines((await get(`/vms/${vmId}/logs`)).body), ['hello-from-app', 'second']);
  });

  test('another key gets the 404 of a VM that does not exist; unsigned is 401; a bad since is 400', async () => {
    const other = await get(`/vms/${vmId}/logs`, mallory);
    assert.equal(other.status, 404);
    assert.equal(other.body.error.code, 'VM_NOT_FOUND');
    assert.equal(JSON.stringify(other.body).includes('hello-from-app'), false);
    assert.equal((await get(`/vms/${vmId}/logs`, null)).status, 401);
    const bad = await get(`/vms/${vmId}/logs?since=yesterday`);
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /Cannot read logs since "yesterday"/);
  });

  test('follow: a long poll answers with the next line once the guest prints it', async () => {
    const last = (await get(`/vms/${vmId}/logs`)).body.lastSeq as number;
    const waiting = get(`/vms/${vmId}/logs?follow=true&after=${last}&waitMs=10000`);
    await new Promise((r) => setTimeout(r, 200));
    await print('followed');
    await vmm.logs?.collector.collect();
    const r = await waiting;
    assert.deepEqual(lines(r.body), ['followed']);
  });

  test('earlier lines survive a restart of the VM (the guest file grows on: no line twice)', async () => {
    assert.equal((await post(`/vms/${vmId}/stop`, {})).status, 200);
    assert.deepEqual(lines((await get(`/vms/${vmId}/logs`)).body), ['hello-from-app', 'second', 'followed']);
    assert.equal((await post(`/vms/${vmId}/start`, { wait: true })).status, 200);
    await print('after-restart');
    assert.deepEqual(lines((await get(`/vms/${vmId}/logs`)).body), [
      'hello-from-app',
      'second',
      'followed',
      'after-restart',
    ]);
  });

  test('a VMM restart (VMs keep running, a new service re-attaches) keeps the lines and reads on without repeats', async () => {
    await vmm.close();
    vmm = await startVmm();
    assert.equal(vmm.manager.get(vmId).state, 'running');
    await print('after-vmm-restart');
    assert.deepEqual(lines((await get(`/vms/${vmId}/logs`)).body), [
      'hello-from-app',
      'second',
      'followed',
      'after-restart',
      'after-vmm-restart',
    ]);
  });

  test('a guest file that was replaced (shorter, other first bytes) is read again from its start', async () => {
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', `echo fresh > ${ELOG}`]);
    const got = lines((await get(`/vms/${vmId}/logs`)).body);
    assert.deepEqual(got.slice(-2), ['after-vmm-restart', 'fresh']);
  });

  test('the logs go with the VM', async () => {
    const dir = `${tmp}/vms/.logs/${vmId}`;
    assert.equal(existsSync(dir), true);
    assert.equal((await call('DELETE', `/vms/${vmId}`)).status, 200);
    await vmm.logs?.collector.collect();
    assert.equal(existsSync(dir), false);
  });
});
