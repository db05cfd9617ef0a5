import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HEALTHCHECK_DEFAULTS } from '@formation/interface';
import { normalizeFormfile, parseDuration, parseFormfile } from '../src/index.ts';
import { ok, one } from './helpers.ts';

const hc = (line: string) => ok(`NAME app\n${line}\n`).healthcheck;

describe('HEALTHCHECK', () => {
  test('the three kinds, with defaults filled in', () => {
    assert.deepEqual(hc('HEALTHCHECK HTTP 8080 /health'), {
      test: { type: 'http', port: 8080, path: '/health' },
      ...HEALTHCHECK_DEFAULTS,
    });
    assert.deepEqual(hc('healthcheck http 80')?.test, { type: 'http', port: 80, path: '/' });
    assert.deepEqual(hc('HEALTHCHECK TCP 5432')?.test, { type: 'tcp', port: 5432 });
    assert.deepEqual(hc('HEALTHCHECK CMD curl -f http://localhost:8080/ || exit 1')?.test, {
      type: 'cmd',
      command: { form: 'shell', command: 'curl -f http://localhost:8080/ || exit 1' },
    });
    assert.deepEqual(hc('HEALTHCHECK CMD ["pg_isready", "-q"]')?.test, {
      type: 'cmd',
      command: { form: 'exec', argv: ['pg_isready', '-q'] },
    });
    // A shell command keeps its quotes as written (an unbalanced one is the shell's business, as for RUN).
    assert.deepEqual(hc(`HEALTHCHECK CMD echo "it's ok`)?.test, {
      type: 'cmd',
      command: { form: 'shell', command: `echo "it's ok` },
    });
  });

  test('options: durations with units, retries, any order, case-insensitive; continuation lines', () => {
    assert.deepEqual(hc('HEALTHCHECK --retries=5 --START-PERIOD=1m30s --interval=500ms500ms --timeout=1s TCP 22'), {
      test: { type: 'tcp', port: 22 },
      intervalMs: 1000,
      timeoutMs: 1000,
      retries: 5,
      startPeriodMs: 90_000,
    });
    assert.equal(hc('HEALTHCHECK --start-period=0s TCP 22')?.startPeriodMs, 0);
    // Without --timeout, a short interval shortens the timeout (3 s default) instead of failing.
    assert.equal(hc('HEALTHCHECK --interval=2s TCP 22')?.timeoutMs, 2000);
    assert.deepEqual(ok('NAME app\nHEALTHCHECK --interval=5s \\\n  HTTP 8080 \\\n  /ready\n').healthcheck, {
      ...HEALTHCHECK_DEFAULTS,
      test: { type: 'http', port: 8080, path: '/ready' },
      intervalMs: 5000,
    });
  });

  test('NONE and omitting it are the same spec (and the same normalized text: same Formpack id)', () => {
    const none = ok('NAME app\nHEALTHCHECK NONE\n');
    const omitted = ok('NAME app\n');
    assert.equal(none.healthcheck, undefined);
    assert.equal(normalizeFormfile(none), normalizeFormfile(omitted));
    assert.ok(!normalizeFormfile(omitted).includes('healthcheck'), 'Formfiles without one keep their old ids');
    const a = normalizeFormfile(ok('NAME app\nHEALTHCHECK HTTP 8080 /a\n'));
    const b = normalizeFormfile(ok('NAME app\nHEALTHCHECK HTTP 8080 /b\n'));
    const c = normalizeFormfile(ok('NAME app\nHEALTHCHECK --retries=4 HTTP 8080 /a\n'));
    assert.equal(new Set([a, b, c, normalizeFormfile(omitted)]).size, 4, 'every change changes the normalized text');
  });

  // Every bad input: code, line, column (pointing at the offending word), and what to do.
  const L = 'HEALTHCHECK '; // column of the first argument is 13
  const cases: Array<[string, string, number, RegExp]> = [
    ['HEALTHCHECK', 'FORMFILE_MISSING_ARGUMENT', 12, /needs a value: HEALTHCHECK \[--interval/],
    [`${L}--retries=3`, 'FORMFILE_MISSING_ARGUMENT', 24, /needs what to check after its options: CMD/],
    [`${L}CMD`, 'FORMFILE_MISSING_ARGUMENT', 16, /CMD needs a command/],
    [`${L}CMD   `, 'FORMFILE_MISSING_ARGUMENT', 19, /CMD needs a command/],
    [`${L}HTTP`, 'FORMFILE_MISSING_ARGUMENT', 17, /HTTP needs a port: HTTP <port> \[<path>\]/],
    [`${L}TCP`, 'FORMFILE_MISSING_ARGUMENT', 16, /TCP needs a port: TCP <port>/],
    [`${L}PING 80`, 'FORMFILE_SYNTAX', 13, /CMD, HTTP, TCP or NONE, got "PING"/],
    [`${L}HTPP 80`, 'FORMFILE_SYNTAX', 13, /did you mean HTTP\?/],
    [`${L}http://localhost/health`, 'FORMFILE_SYNTAX', 13, /write HTTP <port> <path>/],
    [
      `${L}--intervl=5s TCP 1`,
      'FORMFILE_SYNTAX',
      13,
      /Unknown HEALTHCHECK option "--intervl"; did you mean --interval\?/,
    ],
    [`${L}--start-interval=5s TCP 1`, 'FORMFILE_SYNTAX', 13, /--start-interval is not supported: .*use --start-period/],
    [
      `${L}--frobnicate TCP 1`,
      'FORMFILE_SYNTAX',
      13,
      /expected one of --interval, --timeout, --retries, --start-period/,
    ],
    [`${L}--interval TCP 1`, 'FORMFILE_MISSING_ARGUMENT', 13, /needs a value written with "=", such as --interval=10s/],
    [`${L}--retries= TCP 1`, 'FORMFILE_MISSING_ARGUMENT', 13, /such as --retries=3/],
    [`${L}--interval=5s --interval=6s TCP 1`, 'FORMFILE_DUPLICATE', 27, /--interval is given twice/],
    [`${L}--interval=5 TCP 1`, 'FORMFILE_BAD_VALUE', 24, /needs a unit: write 5s/],
    [`${L}--interval=1.5s TCP 1`, 'FORMFILE_BAD_VALUE', 24, /write 1500ms, not 1.5s/],
    [`${L}--interval=10sec TCP 1`, 'FORMFILE_BAD_VALUE', 24, /a duration such as 10s, 500ms, 1m30s or 1h, got "10sec"/],
    [`${L}--interval=-1s TCP 1`, 'FORMFILE_BAD_VALUE', 24, /a duration such as/],
    [`${L}--interval=500ms TCP 1`, 'FORMFILE_OUT_OF_RANGE', 24, /between 1s and 1h/],
    [`${L}--interval=2h TCP 1`, 'FORMFILE_OUT_OF_RANGE', 24, /between 1s and 1h/],
    [`${L}--interval=99999999999h TCP 1`, 'FORMFILE_OUT_OF_RANGE', 24, /between 1s and 1h/],
    [`${L}--timeout=10m --interval=1h TCP 1`, 'FORMFILE_OUT_OF_RANGE', 23, /between 1s and 5m/],
    [
      `${L}--timeout=20s TCP 1`,
      'FORMFILE_BAD_VALUE',
      13,
      /--timeout \(20000 ms\) must not be longer than --interval \(10000 ms\)/,
    ],
    [`${L}--retries=0 TCP 1`, 'FORMFILE_OUT_OF_RANGE', 23, /--retries must be between 1 and 100/],
    [`${L}--retries=three TCP 1`, 'FORMFILE_BAD_VALUE', 23, /whole number such as 3, got "three"/],
    [`${L}--start-period=2h TCP 1`, 'FORMFILE_OUT_OF_RANGE', 28, /between 0s and 1h/],
    [`${L}HTTP eighty`, 'FORMFILE_BAD_VALUE', 18, /expects a port number such as 8080, got "eighty"/],
    [`${L}HTTP 0`, 'FORMFILE_OUT_OF_RANGE', 18, /between 1 and 65535/],
    [`${L}TCP 65536`, 'FORMFILE_OUT_OF_RANGE', 17, /between 1 and 65535/],
    [`${L}HTTP 8080/health`, 'FORMFILE_BAD_VALUE', 18, /write HTTP 8080 \/health/],
    [`${L}HTTP 8080 health`, 'FORMFILE_BAD_VALUE', 23, /must start with "\/"/],
    [`${L}HTTP 8080 "/a b"`, 'FORMFILE_BAD_VALUE', 23, /percent-encode the others \(a space is %20\)/],
    [`${L}HTTP 8080 /a\rHost:evil`, 'FORMFILE_BAD_VALUE', 23, /only URI characters/],
    [`${L}HTTP 8080 /${'a'.repeat(1024)}`, 'FORMFILE_OUT_OF_RANGE', 23, /longer than 1024/],
    [`${L}HTTP 8080 /a /b`, 'FORMFILE_SYNTAX', 26, /takes a port and a path; unexpected "\/b"/],
    [`${L}HTTP 8080 "/a`, 'FORMFILE_SYNTAX', 23, /Unclosed double quote/],
    [`${L}TCP 22 23`, 'FORMFILE_SYNTAX', 20, /takes one port; unexpected "23"/],
    [`${L}CMD ["a",`, 'FORMFILE_SYNTAX', 22, /HEALTHCHECK CMD the JSON array is not closed/],
    [`${L}CMD []`, 'FORMFILE_SYNTAX', 17, /must name a program/],
    [`${L}NONE now`, 'FORMFILE_SYNTAX', 18, /NONE takes nothing after it; unexpected "now"/],
    [`${L}--retries=2 NONE`, 'FORMFILE_SYNTAX', 13, /NONE takes no options/],
    [
      `${L}--interval=1s --timeout=1s --retries=1 --start-period=0s --interval=2s TCP 1`,
      'FORMFILE_SYNTAX',
      70,
      /at most 4 options, each once/,
    ],
  ];
  for (const [line, code, column, message] of cases) {
    test(`refuses ${JSON.stringify(line.slice(0, 60))} with ${code} at 2:${column}`, () => {
      one(`NAME app\n${line}\n`, code, 2, column, message);
    });
  }

  test('once only: a second HEALTHCHECK is a duplicate naming the first line', () => {
    one('NAME app\nHEALTHCHECK TCP 1\nHEALTHCHECK NONE\n', 'FORMFILE_DUPLICATE', 3, 1, /already set on line 2/);
  });

  test('all errors of the line at once, each at its own column', () => {
    const r = parseFormfile('NAME app\nHEALTHCHECK --interval=5 --retries=0 HTTP 99999 x y\n');
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.column]),
      [
        ['FORMFILE_BAD_VALUE', 24],
        ['FORMFILE_OUT_OF_RANGE', 36],
        ['FORMFILE_OUT_OF_RANGE', 43],
        ['FORMFILE_BAD_VALUE', 49],
        ['FORMFILE_SYNTAX', 51],
      ],
    );
  });

  test('parseDuration', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('1h1m1s1ms'), 3_661_001);
    assert.equal(parseDuration('250ms'), 250);
    for (const bad of ['', 's', '10', '1.5s', '10 s', '1d', 'ms10', '1s2', '1s 2s'])
      assert.equal(typeof parseDuration(bad), 'string', bad);
  });
});
