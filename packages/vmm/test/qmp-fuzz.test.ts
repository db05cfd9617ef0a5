// Fuzzing the QMP / guest-agent reader (fast-check) through its public API: a fake QEMU on a unix socket
// answers with arbitrary bytes, partial JSON lines and 0xFF sentinels, split into arbitrary chunks, before
// the real reply. The reader must keep its framing (the real reply is matched, the connection stays open
// and in sync) and never throw out of its socket handler: the guest agent's bytes come from inside the
// guest, so anything a tenant can write there reaches this code in the node's process.
// Each property runs in a worker thread with a watchdog (a hang or an uncaught exception fails the test
// with the input). Bounded: FORM_FUZZ_MS per property (default 2500); FORM_FUZZ_SEED replays a run.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { isMainThread } from 'node:worker_threads';
import { fuzzInWorker, fuzzWorker } from '@formation/interface/testing';
import fc from 'fast-check';
import { QmpClient } from '../src/qmp.ts';

const BUDGET_MS = Number(process.env.FORM_FUZZ_MS ?? 2500);
const SEED = process.env.FORM_FUZZ_SEED ? Number(process.env.FORM_FUZZ_SEED) : undefined;
const WATCHDOG_MS = BUDGET_MS + 20_000;

// ---- a fake QEMU / guest agent that sends `noise` before answering -----------------------------------------

interface Case {
  /** Bytes the peer sends before the real answer (a "\n" is sent after them, ending any partial line). */
  noise: Uint8Array;
  /** Where `noise` + answer is cut into separate writes (fractions of its length). */
  cuts: number[];
}

async function sendChunked(sock: Socket, payload: Buffer, cuts: number[]): Promise<void> {
  const at = [...new Set(cuts.map((c) => Math.floor(c * payload.length)))].sort((a, b) => a - b);
  let from = 0;
  for (const c of [...at, payload.length]) {
    if (c > from) sock.write(payload.subarray(from, c));
    from = Math.max(from, c);
    await tick();
  }
}

/** One QMP session: greeting, capabilities, then `query-status` answered after the noise; then one more command. */
async function qmpSession(dir: string, k: Case): Promise<void> {
  const path = join(dir, `q${Math.random().toString(36).slice(2)}.sock`);
  const server = createServer((sock) => {
    sock.write('{"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0}}, "capabilities": []}}\n');
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, nl)) as { execute: string; id: string };
        buf = buf.slice(nl + 1);
        if (m.execute === 'query-status') {
          const answer = Buffer.from(`\n{"return": {"status": "running"}, "id": "${m.id}"}\n`);
          void sendChunked(sock, Buffer.concat([k.noise, answer]), k.cuts);
        } else sock.write(`{"return": {"ok": "${m.execute}"}, "id": "${m.id}"}\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  const q = await QmpClient.connect(path, { timeoutMs: 3000, connectTimeoutMs: 3000 });
  try {
    assert.deepEqual(await q.execute('query-status'), { status: 'running' });
    assert.equal(q.isOpen, true);
    assert.deepEqual(await q.execute('query-version'), { ok: 'query-version' }, 'still in sync afterwards');
  } finally {
    q.close();
    server.close();
  }
}

/**
 * A fake guest agent on a unix socket in `dir`: every command line it reads (a leading 0xFF stripped) goes
 * to `answer`, which writes the reply. Returns the socket path and the server to close.
 */
async function fakeAgent(
  dir: string,
  answer: (m: { execute: string; arguments?: { id: number } }, sock: Socket) => void,
): Promise<{ path: string; close(): void }> {
  const path = join(dir, `g${Math.random().toString(36).slice(2)}.sock`);
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
        const raw = buf.subarray(0, nl);
        buf = buf.subarray(nl + 1);
        answer(JSON.parse((raw[0] === 0xff ? raw.subarray(1) : raw).toString('utf8')), sock);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, close: () => server.close() };
}

/** One guest-agent session: stale noise before the 0xFF-delimited sync echo, then one command in order. */
async function qgaSession(dir: string, k: Case): Promise<void> {
  const agent = await fakeAgent(dir, (m, sock) => {
    if (m.execute === 'guest-sync-delimited') {
      const echo = Buffer.concat([Buffer.from('\n\xff', 'latin1'), Buffer.from(`{"return": ${m.arguments?.id}}\n`)]);
      void sendChunked(sock, Buffer.concat([k.noise, echo]), k.cuts);
    } else sock.write(`{"return": {"pong": "${m.execute}"}}\n`);
  });
  const ga = await QmpClient.connect(agent.path, { mode: 'qga', timeoutMs: 3000, connectTimeoutMs: 3000 });
  try {
    assert.deepEqual(await ga.execute('guest-ping'), { pong: 'guest-ping' });
    assert.equal(ga.isOpen, true);
  } finally {
    ga.close();
    agent.close();
  }
}

/** A guest agent whose reply to the command is `noise` itself (after a clean sync). */
async function qgaReplySession(dir: string, k: Case): Promise<void> {
  const agent = await fakeAgent(dir, (m, sock) => {
    if (m.execute === 'guest-sync-delimited') sock.write(`\xff{"return": ${m.arguments?.id}}\n`, 'latin1');
    else sock.write(k.noise);
  });
  const ga = await QmpClient.connect(agent.path, { mode: 'qga', timeoutMs: 2000, connectTimeoutMs: 3000 });
  try {
    await ga.execute('guest-ping').catch((e: Error) => assert.match(e.message, /guest-ping|timed out|no answer/));
  } finally {
    ga.close();
    agent.close();
  }
}

/** Harness self-tests: a session that throws out of an event handler, and one that never ends. */
const crashSession = async () => {
  setImmediate(() => {
    throw new TypeError('deliberate');
  });
  await new Promise((r) => setTimeout(r, 1000));
};
const hangSession = () => new Promise<void>(() => setInterval(() => undefined, 1000));

// ---- the noise ---------------------------------------------------------------------------------------------

const MESSAGES = [
  '{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}',
  '{"event": "SHUTDOWN"}',
  '{"return": {}}',
  '{"return": 999}',
  '{"error": {"class": "GenericError", "desc": "x"}}',
  '{"QMP": {"version": {}}}',
  '{"id": "form-99", "return": 1}',
  '{"return": {}, "id": null}',
  '[]',
  '{}',
];
const line = fc.oneof(
  fc.constantFrom(...MESSAGES),
  fc.constantFrom(...MESSAGES).chain((m) => fc.nat({ max: m.length }).map((n) => m.slice(0, n))),
  fc.json(),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('\xff', '\xff\xff{', '\r', ' ', '{"', '"}', '\\'),
);
const lines = fc
  .array(fc.tuple(line, fc.constantFrom('\n', '\r\n', '', '\xff')), { maxLength: 12 })
  .map((ls) => Buffer.from(ls.map(([l, e]) => l + e).join(''), 'latin1'));
const noise = fc.oneof(
  lines,
  fc.uint8Array({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 40, min: 0x0a, max: 0xff }),
);
const cases = fc.record({ noise, cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }) });

/** The lines of `noise` the reader will parse that are JSON values, each as the reader sees it. */
function jsonLines(n: Uint8Array): unknown[] {
  const out: unknown[] = [];
  for (let raw of Buffer.from(n).toString('latin1').split('\n')) {
    const ff = raw.lastIndexOf('\xff');
    if (ff >= 0) raw = raw.slice(ff + 1);
    try {
      out.push(JSON.parse(Buffer.from(raw, 'latin1').toString('utf8').trim()));
    } catch {
      // not JSON: the reader skips it
    }
  }
  return out;
}
/** Lines that are JSON objects (what QEMU sends) or not JSON at all: the framing property. */
const objectsOrGarbage = (k: Case) => jsonLines(k.noise).every((v) => typeof v === 'object' && v !== null);

const PROPERTIES = {
  'qmp: garbage, partial lines and stray messages around a reply': { session: qmpSession, only: objectsOrGarbage },
  'qga: stale garbage before the 0xFF sync echo': { session: qgaSession, only: objectsOrGarbage },
  'qmp: any JSON value on a line (null, 1, "x") never throws out of the reader': {
    session: qmpSession,
    only: () => true,
  },
  'qga: any JSON value on a line never throws out of the reader': { session: qgaSession, only: () => true },
  'qga: a reply that is any JSON value': { session: qgaReplySession, only: () => true },
  'selftest: crash': { session: crashSession, only: () => true },
  'selftest: hang': { session: hangSession, only: () => true },
} as const;
type PropertyName = keyof typeof PROPERTIES;

// ---- worker side -------------------------------------------------------------------------------------------

const worker = fuzzWorker<{ fixed?: string; dir: string }>();
if (worker) {
  const { fixed, dir } = worker.data;
  const { session, only } = PROPERTIES[worker.name as PropertyName];
  let runs = 0;
  const run = async (k: Case) => {
    worker.record(Buffer.from(Buffer.from(k.noise).toString('hex')));
    runs++;
    await session(dir, k);
  };
  worker.finish(
    fixed !== undefined
      ? run({ noise: Buffer.from(fixed, 'latin1'), cuts: [] })
      : fc.assert(
          fc.asyncProperty(
            cases.filter((k) => only(k)),
            run,
          ),
          { interruptAfterTimeLimit: BUDGET_MS, numRuns: 1_000_000, ...(SEED ? { seed: SEED } : {}) },
        ),
    () => runs,
  );
}

/** Run a property (or one fixed noise) in a worker; rejects with the input on a failure, crash or hang. */
async function fuzz(name: PropertyName, fixed?: string, watchdogMs = WATCHDOG_MS): Promise<{ runs: number }> {
  // The sockets' directory belongs to this side: removed whatever the worker did (a crash or a hang too).
  const dir = mkdtempSync(join(tmpdir(), 'form-qmp-fuzz-'));
  try {
    return await fuzzInWorker({
      url: new URL(import.meta.url),
      name,
      data: { fixed, dir },
      watchdogMs,
      inputBytes: 8192,
      subject: 'the reader',
      show: (hex) => `noise ${JSON.stringify(Buffer.from(Buffer.from(hex).toString(), 'hex').toString('latin1'))}`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- main side ---------------------------------------------------------------------------------------------

// Found by the properties below (issue 17): qmp.ts assumed every JSON line is an object, so a line "null",
// "8" or "\"x\"" (and a qga reply {"error": null}) threw a TypeError out of the socket data handler, an
// uncaught exception that ended formationd; a tenant controls the guest-agent port.

if (isMainThread) {
  describe('QMP reader under fuzzing', () => {
    test('qmp: garbage, partial lines and stray messages around a reply', { timeout: WATCHDOG_MS + 5000 }, async () => {
      const { runs } = await fuzz('qmp: garbage, partial lines and stray messages around a reply');
      assert.ok(runs >= 20, `only ${runs} sessions in ${BUDGET_MS} ms`);
    });
    test('qga: stale garbage before the 0xFF sync echo', { timeout: WATCHDOG_MS + 5000 }, async () => {
      const { runs } = await fuzz('qga: stale garbage before the 0xFF sync echo');
      assert.ok(runs >= 20, `only ${runs} sessions in ${BUDGET_MS} ms`);
    });
    for (const name of [
      'qmp: any JSON value on a line (null, 1, "x") never throws out of the reader',
      'qga: any JSON value on a line never throws out of the reader',
    ] as const) {
      test(name, { timeout: WATCHDOG_MS + 5000 }, async () => {
        await fuzz(name);
      });
    }
    // The minimal inputs, as regressions.
    for (const [name, noise] of [
      ['qmp: any JSON value on a line (null, 1, "x") never throws out of the reader', 'null\n'],
      ['qmp: any JSON value on a line (null, 1, "x") never throws out of the reader', '8\n'],
      ['qmp: any JSON value on a line (null, 1, "x") never throws out of the reader', '"x"\n'],
      ['qga: any JSON value on a line never throws out of the reader', 'null\n'],
      ['qga: a reply that is any JSON value', '{"error": null}\n'],
    ] as const) {
      test(`minimal: ${JSON.stringify(noise)} (${name.slice(0, 3)})`, async () => {
        await fuzz(name, noise);
      });
    }

    test('the harness fails on an uncaught exception and on a hang', async () => {
      await assert.rejects(fuzz('selftest: crash', ''), /uncaught in the reader .*deliberate/s);
      await assert.rejects(fuzz('selftest: hang', 'abc', 1500), /hung \(> 1500 ms\) on noise "abc"/);
    });
  });
}
