// Fuzzing the Formfile parser (fast-check): arbitrary strings, grammar-shaped Formfiles and random edits of
// the examples. The parser must never throw, never hang, and report every problem as a FORMFILE_* diagnostic
// whose line:column points into the text. Each property runs in a worker thread with a wall-clock
// watchdog, so an endless loop fails the test with the input that caused it instead of stalling the run.
// Bounded: a few seconds per property (FORM_FUZZ_MS changes the budget, FORM_FUZZ_SEED replays a run).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { isMainThread } from 'node:worker_threads';
import { ERROR_CODES } from '@formation/interface';
import { fuzzInWorker, fuzzParams, fuzzWorker } from '@formation/interface/testing';
import fc from 'fast-check';
import { parseExecForm } from '../src/exec-form.ts';
import {
  formatDiagnostics,
  INSTRUCTIONS,
  MAX_DIAGNOSTICS,
  MAX_FORMFILE_BYTES,
  normalizeFormfile,
  parseFormfile,
  redactFormfile,
} from '../src/index.ts';

const BUDGET_MS = Number(process.env.FORM_FUZZ_MS ?? 2500);
const WATCHDOG_MS = BUDGET_MS + 15_000;
/** No single Formfile of the sizes generated here may take longer than this to parse. */
const PER_INPUT_MS = 250;

// ---- the invariants ------------------------------------------------------------------------------------

/** Whole-file diagnostics: the only ones without line:column. */
const WHOLE_FILE = new Set(['FORMFILE_TOO_LARGE', 'FORMFILE_MISSING_NAME']);

/** Parse `text` and check every invariant; throws (an AssertionError) on the first one broken. */
function checkFormfile(text: string): void {
  const t0 = performance.now();
  const r = parseFormfile(text);
  const ms = performance.now() - t0;
  assert.ok(ms < PER_INPUT_MS * Math.max(1, text.length / 20_000), `parsing took ${ms.toFixed(0)} ms`);
  checkResult(text, r);
}

function checkResult(text: string, r: ReturnType<typeof parseFormfile>): void {
  assert.equal(r.spec === null, r.errors.length > 0, 'spec is null exactly when there are errors');
  assert.ok(r.errors.length <= MAX_DIAGNOSTICS + 1, `${r.errors.length} diagnostics`);
  const lines = text.replace(/^\ufeff/, '').split(/\r?\n/);
  for (const e of r.errors) {
    assert.match(e.code, /^FORMFILE_/, e.code);
    assert.ok(e.code in ERROR_CODES, `${e.code} is a catalogued error code`);
    assert.ok(typeof e.message === 'string' && e.message.length > 0, 'a message');
    if (e.line === undefined) {
      assert.equal(e.column, undefined);
      assert.ok(WHOLE_FILE.has(e.code) || /^Too many errors/.test(e.message), `${e.code} without a position`);
      continue;
    }
    assert.ok(Number.isInteger(e.line) && e.line >= 1 && e.line <= lines.length, `line ${e.line} of ${lines.length}`);
    const len = (lines[e.line - 1] as string).length;
    assert.ok(
      Number.isInteger(e.column) && (e.column as number) >= 1 && (e.column as number) <= len + 1,
      `column ${e.column} on a line of ${len} characters (${e.code}: ${e.message})`,
    );
  }
  const shown = formatDiagnostics(r.errors, { file: 'Formfile', text });
  for (const e of r.errors) {
    if (e.line !== undefined) assert.ok(shown.includes(`Formfile:${e.line}:${e.column}: `), 'printed as file:line:col');
  }
  if (r.spec) {
    normalizeFormfile(r.spec);
    redactFormfile(r.spec);
    assert.deepEqual(parseFormfile(text), r, 'deterministic');
  }
}

// ---- the inputs -----------------------------------------------------------------------------------------

const examples = ['hello-server'].map((d) =>
  readFileSync(new URL(`../../../examples/${d}/Formfile`, import.meta.url), 'utf8'),
);
const WORDS = [
  ...INSTRUCTIONS.flatMap((i) => [i.name, i.name.toLowerCase()]),
  'FROM',
  'CMD',
  'ADD',
  'ARG',
  'SHELL',
  'USERS',
  'N AME',
  '',
];
const PIECES = [
  '"',
  "'",
  '\\',
  '\\"',
  '\\\\',
  '[',
  ']',
  '[]',
  '["a", "b"]',
  '["unterminated',
  ',',
  '=',
  ':',
  '#',
  '# comment',
  ' ',
  '\t',
  '\\\n',
  '\\ \t\n',
  '\r',
  '\r\n',
  '\n',
  '\ufeff',
  '\u2028',
  '\ud800',
  '😀',
  '-1',
  '0',
  '1',
  '65535',
  '65536',
  '99999999999999999999999',
  '1e3',
  '0x10',
  '1.5',
  'NaN',
  'true',
  'yes',
  'off',
  'username=bob',
  'username:alice',
  'passwd:"a b"',
  'sudo:true',
  'ssh_authorized_keys:"ssh-ed25519 AAAA x"',
  'groups:a,b',
  'shell=/bin/sh',
  'KEY=value',
  'KEY="a b"',
  'scope=build',
  '/',
  '/app',
  '..',
  '../x',
  '/etc/../..',
  '*',
  '$' + '{X}', // a shell-style expansion, literally
  '$HOME',
  'python3',
  'lib$(id)',
  'a'.repeat(300),
  // HEALTHCHECK's words, options and values
  'CMD',
  'HTTP',
  'tcp',
  'NONE',
  '--interval=10s',
  '--timeout=',
  '--retries=3',
  '--start-period=1m30s',
  '--interval',
  '1m30s',
  '500ms',
  '1.5s',
  '/health',
  '/a%20b?x=1',
];
const piece = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...PIECES) },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.nat().map(String) },
  { weight: 1, arbitrary: fc.array(fc.string({ maxLength: 6 }), { maxLength: 4 }).map((a) => JSON.stringify(a)) },
);
const sep = fc.constantFrom(' ', ' ', '\t', '', '  ');
const line = fc
  .tuple(fc.constantFrom(...WORDS), fc.array(fc.tuple(sep, piece), { maxLength: 6 }))
  .map(([w, args]) => w + args.map(([s, p]) => s + p).join(''));
const eol = fc.constantFrom('\n', '\n', '\r\n', '\\\n', '\n\n', '\n# c\n', '\n  ');
const grammarShaped = fc
  .tuple(fc.boolean(), fc.array(fc.tuple(line, eol), { maxLength: 25 }))
  .map(([name, ls]) => (name ? 'NAME app\n' : '') + ls.map(([l, e]) => l + e).join(''));
const edit = fc.record({ at: fc.nat(), del: fc.nat({ max: 8 }), ins: fc.oneof(piece, fc.string({ maxLength: 4 })) });
const mutatedExample = fc
  .tuple(fc.constantFrom(...examples), fc.array(edit, { minLength: 1, maxLength: 8 }))
  .map(([src, edits]) => {
    let s = src;
    for (const e of edits) {
      const at = e.at % (s.length + 1);
      s = s.slice(0, at) + e.ins + s.slice(at + e.del);
    }
    return s;
  });

const hcOption = fc.oneof(
  fc.constantFrom('--interval', '--timeout', '--retries', '--start-period', '--start-interval', '--x', '--'),
  fc.string({ maxLength: 8 }).map((x) => `--${x}`),
);
const hcValue = fc.oneof(
  fc.constantFrom('', '10s', '1m30s', '500ms', '0s', '1h', '3', '1.5s', '99999999999999999999h', '-1s', 's'),
  fc.string({ maxLength: 8 }),
);
const healthcheckLine = fc
  .tuple(
    fc.array(fc.tuple(hcOption, fc.boolean(), hcValue), { maxLength: 5 }),
    fc.constantFrom('CMD', 'cmd', 'HTTP', 'http', 'TCP', 'NONE', 'PING', ''),
    fc.array(fc.tuple(sep, piece), { maxLength: 4 }),
  )
  .map(
    ([opts, kind, args]) =>
      `NAME app\nHEALTHCHECK ${opts.map(([o, eq, v]) => (eq ? `${o}=${v}` : o)).join(' ')} ${kind}${args.map(([s, p]) => s + p).join('')}\n`,
  );

const PROPERTIES: Record<string, fc.Arbitrary<string>> = {
  'HEALTHCHECK lines': healthcheckLine,
  'arbitrary strings': fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: 'binary', maxLength: 400 })),
  'grammar-shaped Formfiles': grammarShaped,
  'random edits of the examples': mutatedExample,
};

// ---- worker side: run one property, the current input recorded for the watchdog ---------------------------

const worker = fuzzWorker();
if (worker) {
  let runs = 0;
  const prop = fc.property(PROPERTIES[worker.name] as fc.Arbitrary<string>, (text) => {
    worker.record(Buffer.from(text, 'utf8'));
    runs++;
    checkFormfile(text);
  });
  worker.finish((async () => fc.assert(prop, fuzzParams(1_000_000, BUDGET_MS)))(), () => runs);
}

const fuzz = (name: string) =>
  fuzzInWorker({ url: new URL(import.meta.url), name, watchdogMs: WATCHDOG_MS, subject: 'the parser' });

// ---- main side -------------------------------------------------------------------------------------------

if (isMainThread) {
  describe('Formfile parser under fuzzing: no throw, no hang, every error a FORMFILE_* at line:col', () => {
    for (const name of Object.keys(PROPERTIES)) {
      test(name, { timeout: WATCHDOG_MS + 5_000 }, async () => {
        const { runs } = await fuzz(name);
        assert.ok(runs >= 50, `only ${runs} inputs in ${BUDGET_MS} ms`);
      });
    }

    test('the checker fails on what it must refuse (positions out of range, uncoded errors)', () => {
      const text = 'NAME app\nVCPU x\n';
      const r = parseFormfile(text);
      assert.equal(r.errors.length, 1);
      const e = r.errors[0] as (typeof r.errors)[number];
      checkResult(text, r);
      const doctored = (x: object) => ({ ...r, errors: [{ ...e, ...x }] });
      assert.throws(() => checkResult(text, doctored({ column: 8 })), /column 8 on a line of 6/);
      assert.throws(() => checkResult(text, doctored({ line: 4 })), /line 4 of 3/);
      assert.throws(() => checkResult(text, doctored({ line: undefined, column: undefined })), /without a position/);
      assert.throws(() => checkResult(text, doctored({ code: 'BAD_REQUEST' })), /BAD_REQUEST/);
    });

    test('large adversarial Formfiles (1 MiB) parse in bounded time', () => {
      const big = MAX_FORMFILE_BYTES - 64;
      const cases = [
        `NAME a\nRUN ${'"'.repeat(big)}`,
        `NAME a\nRUN ${'\\\n'.repeat(big / 2)}`,
        `NAME a\n${'RUN x \\\n  '.repeat(big / 12)}y\n`,
        `NAME a\n${'VCPU x\n'.repeat(big / 7)}`,
        `NAME a\nUSER ${'passwd:"'.repeat(big / 8)}`,
        `NAME a\nENTRYPOINT [${'"a",'.repeat(big / 4)}`,
        `NAME a\nENV ${'A=\\" '.repeat(big / 5)}`,
        `${'\t'.repeat(big)}\\`,
        `NAME a\nHEALTHCHECK ${'--interval=1s '.repeat(big / 14)}TCP 1`,
        `NAME a\nHEALTHCHECK --${'a'.repeat(big)} TCP 1`,
        `NAME a\nHEALTHCHECK --interval=${'1s'.repeat(big / 2)} TCP 1`,
        `NAME a\nHEALTHCHECK HTTP 80 /${'%'.repeat(big)}`,
      ];
      for (const c of cases) {
        const t0 = performance.now();
        checkFormfile(c);
        assert.ok(performance.now() - t0 < 3000, `${JSON.stringify(c.slice(0, 30))}… took too long`);
      }
      assert.equal(parseFormfile('x'.repeat(MAX_FORMFILE_BYTES + 1)).errors[0]?.code, 'FORMFILE_TOO_LARGE');
    });

    test('exec form (ENTRYPOINT/RUN [..]) never throws and stays in range', () => {
      // Its contract: text[from] is the "[" (the parser calls it only then).
      const body = fc.oneof(
        fc.json().map((j) => j.slice(1)),
        fc.array(piece, { maxLength: 6 }).map((p) => p.join('')),
        fc.string({ maxLength: 60 }),
      );
      fc.assert(
        fc.property(fc.string({ maxLength: 5 }), body, (prefix, rest) => {
          const s = `${prefix}[${rest}`;
          const r = parseExecForm(s, prefix.length);
          if (!r.ok) assert.ok(r.offset >= prefix.length && r.offset <= s.length, `offset ${r.offset} of ${s.length}`);
          else assert.ok(r.argv.every((a) => typeof a === 'string') && r.argv.length > 0);
        }),
        fuzzParams(100_000, 1000),
      );
    });
  });
}
