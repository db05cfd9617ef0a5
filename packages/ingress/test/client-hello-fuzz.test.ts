// Fuzzing the ClientHello reader (fast-check) in a worker with a watchdog, as the Formfile and QMP
// fuzzers do: random bytes, real hellos from node:tls with random bytes changed, truncated, or behind a
// random prefix. It must never throw or hang, and a server name it accepts is always a clean DNS name.
// FORM_FUZZ_MS sets the budget per property (default 1.5 s), FORM_FUZZ_SEED replays a run.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import { fuzzInWorker, fuzzWorker } from '@formation/interface/testing';
import fc from 'fast-check';
import { hostProblem, readClientHello } from '../src/client-hello.ts';
import { captureClientHello, frame, helloBody, reframe, sniExt } from './hello.ts';

const BUDGET_MS = Number(process.env.FORM_FUZZ_MS ?? 1500);
const SEED = process.env.FORM_FUZZ_SEED ? Number(process.env.FORM_FUZZ_SEED) : undefined;
const WATCHDOG_MS = BUDGET_MS + 15_000;

function check(bytes: Uint8Array): void {
  const r = readClientHello(bytes);
  assert.ok(['more', 'ok', 'refused'].includes(r.kind), r.kind);
  if (r.kind === 'ok') {
    assert.equal(hostProblem(r.serverName), undefined, r.serverName);
    assert.equal(r.serverName, r.serverName.toLowerCase());
    assert.ok(r.alpn.every((p) => typeof p === 'string' && p.length > 0));
  }
  if (r.kind === 'refused') assert.ok(r.reason.length > 0);
}

function properties(hellos: Buffer[]): Record<string, fc.Arbitrary<Uint8Array>> {
  const real = fc.constantFrom(...hellos);
  return {
    'random bytes': fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.concat([Buffer.from([0x16, 3, 1]), b])),
    ),
    'real hellos with bytes changed': fc
      .tuple(real, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }))
      .map(([src, edits]) => {
        const b = Buffer.from(src);
        for (const [at, v] of edits) b[at % b.length] = v;
        return b;
      }),
    'real hellos truncated or behind a prefix': fc.oneof(
      fc.tuple(real, fc.nat()).map(([src, n]) => src.subarray(0, n % (src.length + 1))),
      fc
        .tuple(fc.uint8Array({ maxLength: 64 }), real)
        .map(([p, src]) => Buffer.concat([Buffer.from([0x16, 3, 1]), p, src])),
    ),
  };
}

const worker = fuzzWorker<{ hellos: string[] }>();
if (worker) {
  const props = properties(worker.data.hellos.map((h) => Buffer.from(h, 'hex')));
  let runs = 0;
  worker.finish(
    (async () =>
      fc.assert(
        fc.property(props[worker.name] as fc.Arbitrary<Uint8Array>, (bytes) => {
          worker.record(bytes);
          runs++;
          check(bytes);
        }),
        { interruptAfterTimeLimit: BUDGET_MS, numRuns: 1_000_000, ...(SEED ? { seed: SEED } : {}) },
      ))(),
    () => runs,
  );
}

if (isMainThread) {
  describe('ClientHello reader under fuzzing: never throws, never hangs, accepted names are clean', async () => {
    const tls13 = await captureClientHello({ servername: 'shop.example.com', alpn: ['h2', 'http/1.1'] });
    const hellos = [
      tls13,
      await captureClientHello({ servername: 'a.b.example', maxVersion: 'TLSv1.2' }),
      await captureClientHello({}),
      frame(helloBody([sniExt('a.example')])),
      reframe(tls13, 300),
    ].map((b) => b.toString('hex'));
    for (const name of Object.keys(properties([Buffer.alloc(1)]))) {
      test(name, { timeout: WATCHDOG_MS + 5_000 }, async () => {
        const { runs } = await fuzzInWorker({
          url: new URL(import.meta.url),
          name,
          data: { hellos },
          watchdogMs: WATCHDOG_MS,
          inputBytes: 4096,
          subject: 'the ClientHello reader',
          show: (b) => `bytes ${Buffer.from(b).toString('hex')}`,
        });
        assert.ok(runs >= 100, `only ${runs} inputs in ${BUDGET_MS} ms`);
      });
    }
  });
}
