import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { LogEntry, ProcessRecord, RuntimeStore } from '../src/runtime-store.ts';
import type { Meta, Result, RuntimeModule } from '../src/types.ts';

// What every RuntimeStore must do for the process manager (issue 21): keep modules and process
// records by id, keep each process's message log by sequence with its item-id index and results, read
// ranges back in sequence order, forget a process with everything it logged, and hand out copies.
// The memory store (memory-store.test.ts, unit lane) and the Redis store (redis-store.test.ts) pass it.

export interface StoreRig {
  /** A store with nothing in it; each call empties what earlier ones held. */
  fresh(): Promise<RuntimeStore>;
  /** Another handle on what `store` holds (a new connection where there is one to make). */
  reopen(store: RuntimeStore): Promise<RuntimeStore>;
  /** Called once after the suite. */
  close(): Promise<void>;
}

const mod = (id: string, image = 'formation/counter:1'): RuntimeModule => ({
  id,
  moduleFormat: 'web.vmdocker-js-ao.v0.1.0',
  tags: [{ name: 'Image-Name', value: image }],
});

const rec = (id: string, sequence = 0): ProcessRecord => ({
  id,
  moduleId: 'mod-1',
  owner: '0xowner',
  data: 'State.count = 0;',
  tags: [{ name: 'Name', value: id }],
  createdAt: '2026-01-02T03:04:05.000Z',
  checkpoint: { sha256: String(sequence).repeat(64).slice(0, 64), sequence },
});

const meta = (pid: string, sequence: number, data = `d${sequence}`): Meta => ({
  itemId: `${pid}-item-${sequence}`,
  processId: pid,
  action: 'Inc',
  sender: '0xsender',
  sequence,
  nonce: sequence,
  timestamp: 1_700_000_000_000 + sequence,
  params: { Reply: 'yes' },
  data,
  mode: 'apply',
});

const entry = (pid: string, sequence: number, data?: string): LogEntry => ({
  from: '0xsender',
  meta: meta(pid, sequence, data),
});

const result = (data: string, error?: string): Result => ({
  messages: [{ target: 'other', action: 'Count', data, tags: { Reply: 'no' } }],
  spawns: [],
  output: `printed ${data}\n`,
  data,
  ...(error === undefined ? {} : { error }),
});

const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => a.id.localeCompare(b.id));

/** Register the contract tests for one store; `setup` runs before the first test (skipped when `skip`). */
export function runtimeStoreContract(
  name: string,
  setup: () => Promise<StoreRig>,
  opts: { skip?: string | false } = {},
): void {
  describe(`RuntimeStore contract: ${name}`, { skip: opts.skip ?? false }, () => {
    let rig: StoreRig | undefined;

    async function fresh(): Promise<RuntimeStore> {
      rig ??= await setup();
      return rig.fresh();
    }

    after(async () => {
      await rig?.close();
    });

    it('an empty store lists nothing and knows no process, item or sequence', async () => {
      const s = await fresh();
      assert.deepEqual(await s.listModules(), []);
      assert.deepEqual(await s.listProcesses(), []);
      assert.equal(await s.lastSequence('nope'), 0);
      assert.equal(await s.sequenceOf('nope', 'item'), undefined);
      assert.deepEqual(await s.entries('nope', 1, 10), []);
      assert.deepEqual(await s.results('nope', 1, 3), [undefined, undefined, undefined]);
      await s.deleteProcess('nope');
      assert.deepEqual(await s.listProcesses(), [], 'deleting an unknown process created nothing');
    });

    it('modules: saved and listed by id; a second put of an id replaces it', async () => {
      const s = await fresh();
      await s.putModule(mod('mod-b'));
      await s.putModule(mod('mod-a'));
      assert.deepEqual(byId(await s.listModules()), [mod('mod-a'), mod('mod-b')]);
      await s.putModule(mod('mod-a', 'formation/counter:2'));
      assert.deepEqual(byId(await s.listModules()), [mod('mod-a', 'formation/counter:2'), mod('mod-b')]);
    });

    it('process records: saved, listed, replaced by id without touching the log', async () => {
      const s = await fresh();
      await s.putProcess(rec('p-2'));
      await s.putProcess(rec('p-1'));
      assert.deepEqual(byId(await s.listProcesses()), [rec('p-1'), rec('p-2')]);
      await s.putMessage('p-1', entry('p-1', 1));
      await s.putMessage('p-1', entry('p-1', 2));
      await s.putProcess(rec('p-1', 2)); // a checkpoint moved the record on
      assert.deepEqual(byId(await s.listProcesses()), [rec('p-1', 2), rec('p-2')]);
      assert.equal(await s.lastSequence('p-1'), 2);
      assert.deepEqual(await s.entries('p-1', 1, 2), [entry('p-1', 1), entry('p-1', 2)]);
    });

    it('the log: entries read back in sequence order, whatever order they were written in, and indexed by item id', async () => {
      const s = await fresh();
      // text that a store must not mangle: quotes, newlines, NUL, non-ASCII, JSON inside JSON
      const odd = 'ä "quoted"\n\u0000 {"x":[1]} 🙂';
      for (const seq of [3, 1, 5, 2, 4]) await s.putMessage('p', entry('p', seq, seq === 2 ? odd : undefined));
      assert.equal(await s.lastSequence('p'), 5);
      const all = [1, 2, 3, 4, 5].map((n) => entry('p', n, n === 2 ? odd : undefined));
      assert.deepEqual(await s.entries('p', 1, 5), all);
      assert.deepEqual(await s.entries('p', 2, 3), all.slice(1, 3));
      assert.deepEqual(await s.entries('p', 4, 4), [all[3]]);
      assert.deepEqual(await s.entries('p', 0, 9), all, 'sequences never logged are left out');
      assert.deepEqual(await s.entries('p', 6, 9), []);
      assert.deepEqual(await s.entries('p', 3, 2), [], 'an empty range');
      for (let n = 1; n <= 5; n++) assert.equal(await s.sequenceOf('p', `p-item-${n}`), n);
      assert.equal(await s.sequenceOf('p', 'p-item-6'), undefined);
      assert.equal(await s.sequenceOf('other', 'p-item-1'), undefined, 'item ids are per process');
    });

    it('a sequence written again replaces its entry (marked failed) and the log does not grow', async () => {
      const s = await fresh();
      await s.putMessage('p', entry('p', 1));
      await s.putMessage('p', entry('p', 2));
      const failed: LogEntry = { ...entry('p', 2), failed: 'the container died twice' };
      await s.putMessage('p', failed);
      assert.equal(await s.lastSequence('p'), 2);
      const [first, second] = await s.entries('p', 1, 2);
      assert.deepEqual(second, failed);
      assert.deepEqual(first, entry('p', 1));
      assert.equal(first !== undefined && 'failed' in first, false, 'an entry without failed has no failed field');
      assert.equal(await s.sequenceOf('p', 'p-item-2'), 2);
    });

    it('results: one slot per sequence in the range, undefined where none is stored; a second put replaces', async () => {
      const s = await fresh();
      await s.putResult('p', 1, result('one'));
      await s.putResult('p', 3, result('three', 'kaboom'));
      assert.deepEqual(await s.results('p', 1, 3), [result('one'), undefined, result('three', 'kaboom')]);
      assert.deepEqual(await s.results('p', 0, 1), [undefined, result('one')]);
      assert.deepEqual(await s.results('p', 3, 3), [result('three', 'kaboom')]);
      assert.deepEqual(await s.results('p', 3, 1), [], 'an empty range');
      await s.putResult('p', 1, result('one again'));
      assert.deepEqual(await s.results('p', 1, 1), [result('one again')]);
      const [plain] = await s.results('p', 1, 1);
      assert.equal(plain !== undefined && 'error' in plain, false, 'a result without error has no error field');
    });

    it('processes are apart: logs, item ids and results of one never show in another', async () => {
      const s = await fresh();
      await s.putMessage('a', entry('a', 1));
      await s.putMessage('a', entry('a', 2));
      const b1: LogEntry = { ...entry('b', 1), meta: { ...meta('b', 1), itemId: 'a-item-2' } };
      await s.putMessage('b', b1);
      await s.putResult('a', 1, result('a1'));
      assert.equal(await s.lastSequence('a'), 2);
      assert.equal(await s.lastSequence('b'), 1);
      assert.equal(await s.sequenceOf('a', 'a-item-2'), 2);
      assert.equal(await s.sequenceOf('b', 'a-item-2'), 1, 'the same item id in two processes');
      assert.deepEqual(await s.entries('b', 1, 2), [b1]);
      assert.deepEqual(await s.results('b', 1, 1), [undefined]);
    });

    it('deleting a process forgets its record, log, item ids and results, and nothing of another', async () => {
      const s = await fresh();
      for (const pid of ['gone', 'kept']) {
        await s.putProcess(rec(pid));
        await s.putMessage(pid, entry(pid, 1));
        await s.putResult(pid, 1, result(pid));
      }
      await s.deleteProcess('gone');
      assert.deepEqual(await s.listProcesses(), [rec('kept')]);
      assert.equal(await s.lastSequence('gone'), 0);
      assert.equal(await s.sequenceOf('gone', 'gone-item-1'), undefined);
      assert.deepEqual(await s.entries('gone', 1, 1), []);
      assert.deepEqual(await s.results('gone', 1, 1), [undefined]);
      assert.deepEqual(await s.entries('kept', 1, 1), [entry('kept', 1)]);
      assert.deepEqual(await s.results('kept', 1, 1), [result('kept')]);
      assert.equal(await s.sequenceOf('kept', 'kept-item-1'), 1);
      // the id can be used again, from an empty log
      await s.putProcess(rec('gone'));
      assert.equal(await s.lastSequence('gone'), 0);
      await s.deleteProcess('gone');
      await s.deleteProcess('gone');
      assert.deepEqual(await s.listProcesses(), [rec('kept')], 'a second delete is harmless');
    });

    it('what is stored is a copy: changing what was passed in or read back changes nothing', async () => {
      const s = await fresh();
      const m = mod('mod-1');
      const r = rec('p');
      const e = entry('p', 1);
      const res = result('x');
      await s.putModule(m);
      await s.putProcess(r);
      await s.putMessage('p', e);
      await s.putResult('p', 1, res);
      m.tags.push({ name: 'Changed', value: 'after put' });
      r.checkpoint.sequence = 99;
      e.meta.data = 'changed';
      res.messages.length = 0;
      const [readRec] = await s.listProcesses();
      if (readRec) readRec.owner = 'changed after read';
      const [readEntry] = await s.entries('p', 1, 1);
      if (readEntry) readEntry.from = 'changed after read';
      assert.deepEqual(await s.listModules(), [mod('mod-1')]);
      assert.deepEqual(await s.listProcesses(), [rec('p')]);
      assert.deepEqual(await s.entries('p', 1, 1), [entry('p', 1)]);
      assert.deepEqual(await s.results('p', 1, 1), [result('x')]);
    });

    it('another handle on the same store reads everything back (a node restart)', async () => {
      const s = await fresh();
      await s.putModule(mod('mod-1'));
      await s.putProcess(rec('p', 1));
      await s.putMessage('p', entry('p', 1));
      await s.putMessage('p', { ...entry('p', 2), failed: 'crashed' });
      await s.putResult('p', 1, result('one'));
      const again = await rig?.reopen(s);
      assert.ok(again);
      assert.deepEqual(await again.listModules(), [mod('mod-1')]);
      assert.deepEqual(await again.listProcesses(), [rec('p', 1)]);
      assert.equal(await again.lastSequence('p'), 2);
      assert.equal(await again.sequenceOf('p', 'p-item-2'), 2);
      assert.deepEqual(await again.entries('p', 1, 2), [entry('p', 1), { ...entry('p', 2), failed: 'crashed' }]);
      assert.deepEqual(await again.results('p', 1, 2), [result('one'), undefined]);
    });
  });
}
