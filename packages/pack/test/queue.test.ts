import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { BuildQueue } from '../src/index.ts';

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => {
    open = r;
  });
  return { p, open };
}

test('BuildQueue serves owners round-robin, FIFO within an owner, and bounds what waits', async () => {
  const q = new BuildQueue({ slots: 1, maxQueued: 5, maxQueuedPerOwner: 3 });
  const order: string[] = [];
  const gates = new Map<string, ReturnType<typeof gate>>();
  const job = (owner: string, name: string) => {
    const g = gate();
    gates.set(name, g);
    return q.run(owner, async () => {
      order.push(name);
      await g.p;
      return name;
    });
  };
  const done = [job('A', 'a1'), job('A', 'a2'), job('A', 'a3'), job('A', 'a4'), job('B', 'b1'), job('C', 'c1')];
  assert.equal(q.runningCount, 1);
  assert.equal(q.queuedCount('A'), 3);
  assert.throws(
    () => q.run('A', async () => 'a5'),
    (e: unknown) => e instanceof FormError && e.code === 'PACK_QUEUE_FULL' && /A already has 3/.test(e.message),
  );
  assert.throws(
    () => q.run('D', async () => 'd1'),
    (e: unknown) =>
      e instanceof FormError && e.code === 'PACK_QUEUE_FULL' && /5 builds are already waiting/.test(e.message),
  );
  for (const name of ['a1', 'b1', 'c1', 'a2', 'a3', 'a4']) {
    await new Promise((r) => setImmediate(r));
    assert.equal(order.at(-1), name, `running ${name}: ${order.join(',')}`);
    gates.get(name)!.open();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(await Promise.all(done), ['a1', 'a2', 'a3', 'a4', 'b1', 'c1']);
  assert.equal(q.runningCount, 0);
  assert.equal(q.queuedCount(), 0);
});

test('a failing build frees its slot', async () => {
  const q = new BuildQueue({ slots: 1 });
  await assert.rejects(
    q.run('A', async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal(await q.run('A', async () => 7), 7);
});
