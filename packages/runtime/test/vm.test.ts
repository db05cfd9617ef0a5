import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '@formation/service';
import { decodeCheckpoint } from '../src/checkpoint.ts';
import { ContainerVm } from '../src/container-vm.ts';
import { ImageStore, type StoredImage } from '../src/image-store.ts';
import { buildJsRuntimeImage } from '../src/js-image.ts';
import { RuncContainer } from '../src/runc.ts';
import { RuncBackend } from '../src/runc-backend.ts';
import type { Meta, Result } from '../src/types.ts';
import { meta as baseMeta, containerBackendContract, OWNER } from './container-backend.contract.ts';
import { CACHE_DIR, COUNTER_SRC, integrationSkip, tmp } from './helpers.ts';

const skip = await integrationSkip();
const logger = createLogger('silent');
const USERNS = { hostId: 1_000_000_000, size: 65536 };

describe('ContainerVm: the JS runtime image in runc containers', { skip }, () => {
  let work: string;
  let img: StoredImage;
  const live: RuncContainer[] = [];
  let n = 0;

  async function newVm(pid: string): Promise<ContainerVm> {
    const id = `formrt-test-${process.pid}-${n++}`;
    const c = new RuncContainer({
      id,
      runcRoot: join(work, 'runc'),
      bundleDir: join(work, 'c', id),
      rootfs: img.rootfs,
      image: img.config,
      limits: { memoryMiB: 192, cpus: 1, pids: 64 },
      env: ['FORM_RT_APPLY_TIMEOUT_MS=500'],
      logger,
      userns: USERNS,
    });
    live.push(c);
    await c.start();
    return new ContainerVm(c, pid, 500);
  }

  // every 7th message asks COUNTER_SRC for a reply, so results carry messages too
  const meta = (pid: string, seq: number, action: string, data = '', mode: Meta['mode'] = 'apply'): Meta =>
    baseMeta(pid, seq, action, data, { mode, params: seq % 7 === 0 ? { Reply: 'yes' } : {} });

  before(async () => {
    work = tmp('vm');
    chmodSync(work, 0o711); // the user namespace's root must reach the image root
    const built = await buildJsRuntimeImage(CACHE_DIR);
    img = await new ImageStore(join(work, 'images'), logger, { idShift: USERNS.hostId }).import(built.archive, {
      expectId: built.imageId,
    });
  });
  after(async () => {
    for (const c of live) await c.destroy().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  it('runs a process with no network but loopback, inside its own cgroup with limits', async () => {
    const vm = await newVm('net');
    await vm.spawn({ processId: 'net', owner: OWNER, data: '', tags: [], cuAddr: 'http://node' });
    const c = vm.container;
    const netns = readFileSync(`/proc/${c.pid}/net/dev`, 'utf8');
    assert.deepEqual(
      netns
        .split('\n')
        .slice(2)
        .map((l) => l.split(':')[0]?.trim())
        .filter(Boolean),
      ['lo'],
      'only a loopback interface in the container',
    );
    const status = readFileSync(`/proc/${c.pid}/status`, 'utf8');
    assert.match(status, new RegExp(`^Uid:\\s+${USERNS.hostId + 65534}\\s`, 'm'), 'the runtime server is not root');
    assert.match(status, /^Seccomp:\s+2$/m, 'under the seccomp profile');
    assert.match(
      readFileSync(`/proc/${c.pid}/uid_map`, 'utf8'),
      new RegExp(`^\\s*0\\s+${USERNS.hostId}\\s+65536$`, 'm'),
    );
    const cg = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8');
    assert.match(cg, new RegExp(`memory:/formation-runtime/${c.id}`));
    assert.equal(
      readFileSync(`/sys/fs/cgroup/memory/formation-runtime/${c.id}/memory.limit_in_bytes`, 'utf8').trim(),
      String(192 * 1024 * 1024),
    );
    await vm.close();
    assert.equal(c.alive(), false);
  });

  it('a throwing handler gives an error result, rolls back its change, and the process lives on', async () => {
    const vm = await newVm('p-throw');
    await vm.spawn({ processId: 'p-throw', owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    assert.equal((await vm.apply(OWNER, meta('p-throw', 1, 'Inc', '5'))).error, undefined);
    const bad = await vm.apply(OWNER, meta('p-throw', 2, 'Boom'));
    assert.equal(bad.error, 'kaboom');
    assert.deepEqual(bad.messages, []);
    assert.equal((await vm.apply(OWNER, meta('p-throw', 3, 'Get'))).data, '5');
  });

  it('an endless handler hits the time limit and the process lives on with its state', async () => {
    const vm = await newVm('p-loop');
    await vm.spawn({ processId: 'p-loop', owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    await vm.apply(OWNER, meta('p-loop', 1, 'Inc', '2'));
    const r = await vm.apply(OWNER, meta('p-loop', 2, 'Loop'));
    assert.match(r.error ?? '', /time limit exceeded/);
    assert.equal(vm.container.alive(), true);
    assert.equal(
      (await vm.apply(OWNER, meta('p-loop', 3, 'Get'))).data,
      '2',
      "the looping handler's change was rolled back",
    );
    assert.equal(JSON.parse((await vm.apply(OWNER, meta('p-loop', 4, 'Inc', '1'))).data).count, 3);
  });

  it('a dry run computes a result and changes nothing; Eval is owner-only', async () => {
    const vm = await newVm('p-dry');
    await vm.spawn({ processId: 'p-dry', owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    const dry = await vm.apply(OWNER, meta('p-dry', 1, 'Inc', '10', 'dry-run'));
    assert.equal(JSON.parse(dry.data).count, 10);
    assert.equal((await vm.apply(OWNER, meta('p-dry', 1, 'Get'))).data, '0');
    assert.equal(existsSyncWs(vm), false, 'dry run wrote no workspace file');
    const ev = await vm.apply(
      OWNER,
      meta('p-dry', 2, 'Eval', 'State.count = 41; Handlers.add("twice", "Twice", () => State.count * 2); "ok"'),
    );
    assert.equal(ev.data, 'ok');
    assert.equal((await vm.apply(OWNER, meta('p-dry', 3, 'Twice'))).data, '82');
    const denied = await vm.apply('0xstranger', meta('p-dry', 4, 'Eval', 'State.count = 0'));
    assert.match(denied.error ?? '', /only allowed from the process owner/);
  });

  it('a corrupt checkpoint is refused and the old state kept', async () => {
    const vm = await newVm('p-cp');
    await vm.spawn({ processId: 'p-cp', owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    await vm.apply(OWNER, meta('p-cp', 1, 'Inc', '7'));
    const good = await vm.checkpoint();
    await vm.apply(OWNER, meta('p-cp', 2, 'Inc', '1'));
    const c = JSON.parse(good) as Record<string, string>;
    const flipped = JSON.stringify({ ...c, state: c.state?.replace('"count\\":7', '"count\\":700') });
    assert.notEqual(flipped, good);
    for (const bad of [good.slice(0, good.length / 2), flipped, JSON.stringify({ ...c, workspace: 'AAAA' })]) {
      await assert.rejects(vm.restore(bad), (e: Error & { code?: string }) => e.code === 'RUNTIME_CHECKPOINT_INVALID');
      assert.equal(
        (await vm.apply(OWNER, meta('p-cp', 3, 'Get'))).data,
        '8',
        'state unchanged after a refused restore',
      );
      assert.equal(readFileSync(join(vm.container.workspaceDir, 'count.txt'), 'utf8'), '8', 'workspace unchanged');
    }
    // a checkpoint whose hash is right but whose state the runtime cannot load is refused too
    const { encodeCheckpoint } = await import('../src/checkpoint.ts');
    await assert.rejects(vm.restore(encodeCheckpoint('p-cp', 'not json', c.workspace ?? '')), /Cannot restore/);
    assert.equal((await vm.apply(OWNER, meta('p-cp', 3, 'Get'))).data, '8');
    await vm.restore(good);
    assert.equal((await vm.apply(OWNER, meta('p-cp', 3, 'Get'))).data, '7');
    assert.equal(readFileSync(join(vm.container.workspaceDir, 'count.txt'), 'utf8'), '7');
  });

  it('determinism: 1,000 messages in one run equal 500 + checkpoint + restore in a fresh container + 500', async () => {
    const pid = 'p-det';
    const N = 1000;
    const a = await newVm(pid);
    await a.spawn({ processId: pid, owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    const resultsA: Result[] = [];
    for (let i = 1; i <= N; i++)
      resultsA.push(await a.apply(OWNER, meta(pid, i, i % 97 === 0 ? 'Boom' : 'Inc', String(i % 5))));
    const finalA = decodeCheckpoint(await a.checkpoint());
    await a.close();

    const b1 = await newVm(pid);
    await b1.spawn({ processId: pid, owner: OWNER, data: COUNTER_SRC, tags: [], cuAddr: 'x' });
    const resultsB: Result[] = [];
    for (let i = 1; i <= N / 2; i++)
      resultsB.push(await b1.apply(OWNER, meta(pid, i, i % 97 === 0 ? 'Boom' : 'Inc', String(i % 5))));
    const mid = await b1.checkpoint();
    await b1.close();
    const b2 = await newVm(pid);
    await b2.restore(mid);
    for (let i = N / 2 + 1; i <= N; i++)
      resultsB.push(await b2.apply(OWNER, meta(pid, i, i % 97 === 0 ? 'Boom' : 'Inc', String(i % 5))));
    const finalB = decodeCheckpoint(await b2.checkpoint());

    assert.equal(resultsB.length, N);
    assert.deepEqual(resultsB, resultsA, 'every result identical');
    assert.ok(
      resultsA.some((r) => r.error === 'kaboom') && resultsA.some((r) => r.messages.length === 1),
      'the run covered errors and replies',
    );
    assert.equal(finalB.state, finalA.state, 'identical final state');
    assert.equal(finalB.workspace, finalA.workspace, 'identical workspace archive');
    assert.equal(finalB.sha256, finalA.sha256);
    const state = JSON.parse(JSON.parse(finalA.state).state) as { count: number };
    let expected = 0;
    for (let i = 1; i <= N; i++) if (i % 97 !== 0) expected += i % 5;
    assert.equal(state.count, expected);
  });

  // the runc backend against the ContainerBackend contract (the fake passes it in container-backend.test.ts)
  containerBackendContract('runc', async () => ({
    backend: new RuncBackend({ runcRoot: join(work, 'runc-contract'), logger }),
    spec: (id) => ({
      id,
      bundleDir: join(work, 'contract', id),
      rootfs: img.rootfs,
      image: img.config,
      limits: { memoryMiB: 192, cpus: 1, pids: 64 },
      env: ['FORM_RT_APPLY_TIMEOUT_MS=1000'],
      userns: USERNS,
    }),
    close: async () => undefined,
  }));
});

function existsSyncWs(vm: ContainerVm): boolean {
  try {
    readFileSync(join(vm.container.workspaceDir, 'count.txt'));
    return true;
  } catch {
    return false;
  }
}
