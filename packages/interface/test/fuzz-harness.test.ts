// The fuzz harness itself (this file is also its own worker): a passing property reports its runs, a
// failing one its message, a hang and an uncaught exception fail naming the input recorded last.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import { fuzzInWorker, fuzzWorker } from '../src/testing.ts';

const worker = fuzzWorker<{ n: number }>();
if (worker) {
  let runs = 0;
  const enc = (s: string) => new TextEncoder().encode(s);
  const cases: Record<string, () => Promise<void>> = {
    ok: async () => {
      for (let i = 0; i < worker.data.n; i++) {
        worker.record(enc(`input ${i}`));
        runs++;
      }
    },
    fail: async () => {
      worker.record(enc('bad'));
      runs++;
      throw new Error('property broken by "bad"');
    },
    hang: () => {
      worker.record(enc('slow'));
      runs++;
      return new Promise<void>(() => setInterval(() => undefined, 1000));
    },
    crash: async () => {
      worker.record(enc('boom'));
      runs++;
      setImmediate(() => {
        throw new Error('deliberate crash');
      });
      await new Promise<void>(() => undefined);
    },
  };
  worker.finish((cases[worker.name] as () => Promise<void>)(), () => runs);
}

const run = (name: string, watchdogMs = 10_000) =>
  fuzzInWorker({ url: new URL(import.meta.url), name, data: { n: 7 }, watchdogMs, subject: 'the thing' });

if (isMainThread) {
  describe('fuzzInWorker', () => {
    test('a passing property reports how many inputs it tried', async () => {
      assert.deepEqual(await run('ok'), { runs: 7 });
    });
    test('a failing property rejects with its message and the count', async () => {
      await assert.rejects(run('fail'), /after 1 inputs: property broken by "bad"/);
    });
    test('a hang is cut by the watchdog, naming the last input', async () => {
      await assert.rejects(run('hang', 1500), /the thing hung \(> 1500 ms\) on "slow"/);
    });
    test('an uncaught exception fails, naming the last input', async () => {
      await assert.rejects(run('crash'), /uncaught in the thing .* on "boom": .*deliberate crash/s);
    });
  });
}
