import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  DEFAULT_FILE_TIMEOUT_S,
  failed,
  fileTimeoutMs,
  packageOfFile,
  runLanes,
  runTestFile,
  slowestLines,
  splitLanes,
  testEnv,
  testFiles,
  totals,
  unitLaneEnabled,
  unitLaneFiles,
  withoutFileSummary,
} from '../test-files.mjs';

const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'form-runner-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a test file into the scratch folder and returns its path. */
function fixture(name, body) {
  const path = join(dir, name);
  writeFileSync(path, `import { describe, test } from 'node:test';\n${body}\n`);
  return path;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child that nobody reaped yet is a zombie: it has ended.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
};

test('FORM_TEST_FILE_TIMEOUT sets the per-file limit in seconds; a bad value is refused, not ignored', () => {
  assert.equal(fileTimeoutMs({}), DEFAULT_FILE_TIMEOUT_S * 1000);
  assert.equal(fileTimeoutMs({ FORM_TEST_FILE_TIMEOUT: '' }), DEFAULT_FILE_TIMEOUT_S * 1000);
  assert.equal(fileTimeoutMs({ FORM_TEST_FILE_TIMEOUT: '900' }), 900_000);
  for (const bad of ['0', '-5', '10m', '1.5', ' 60', '99999999']) {
    assert.throws(
      () => fileTimeoutMs({ FORM_TEST_FILE_TIMEOUT: bad }),
      /Cannot use FORM_TEST_FILE_TIMEOUT=.*whole seconds/,
    );
  }
});

test('a passing file reports its counts and skips', async () => {
  const file = fixture(
    'pass.test.mjs',
    "test('works', () => {});\ndescribe('needs a thing', { skip: 'no thing here' }, () => { test('x', () => {}); });",
  );
  const r = await runTestFile(file, { root, timeoutMs: 60_000 });
  assert.equal(r.timedOut, false);
  assert.equal(r.code, 0);
  assert.equal(failed(r), false);
  assert.equal(r.counts.passed, 1);
  assert.deepEqual(
    r.skips.map((s) => [s.name, s.type, s.reason]),
    [['needs a thing', 'suite', 'no thing here']],
  );
  assert.match(r.output, /✔ works/);
});

test('a failing test fails its file', async () => {
  const file = fixture('fail.test.mjs', "test('breaks', () => { throw new Error('boom'); });");
  const r = await runTestFile(file, { root, timeoutMs: 60_000 });
  assert.equal(failed(r), true);
  assert.equal(r.counts.failed, 1);
  assert.match(r.output, /breaks/);
});

test('a hung file is killed at its limit with every process it started, and fails by name', async () => {
  const pidFile = join(dir, 'sleeper.pid');
  const file = fixture(
    'hang.test.mjs',
    `import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
test('before the hang', () => {});
test('hangs', async () => {
  const c = spawn('sleep', ['300'], { stdio: 'ignore' });
  writeFileSync(${JSON.stringify(pidFile)}, String(c.pid));
  await new Promise(() => setInterval(() => {}, 1000));
});`,
  );
  const r = await runTestFile(file, { root, timeoutMs: 3000, killGraceMs: 1000 });
  assert.equal(r.timedOut, true);
  assert.equal(failed(r), true);
  assert.equal(r.file, file);
  assert.match(r.output, /before the hang/, 'what the file printed before it hung is kept');
  const sleeper = Number(readFileSync(pidFile, 'utf8'));
  assert.equal(alive(sleeper), false, 'the sleep the hung test started was killed with it');
});

test('a file that never starts its tests (a crash while loading) fails', async () => {
  const file = fixture('crash.test.mjs', "throw new Error('cannot load');");
  const r = await runTestFile(file, { root, timeoutMs: 60_000 });
  assert.equal(failed(r), true);
  assert.match(r.output, /cannot load/);
});

test('lanes run every file and the results add up; the slowest come first', async () => {
  const a = fixture('a.test.mjs', "test('a1', () => {}); test('a2', () => {});");
  const b = fixture('b.test.mjs', "test('b1', () => {});");
  const c = fixture('c.test.mjs', "test('c1', () => {});");
  const done = [];
  const results = await runLanes([[a, b], [c]], { root, timeoutMs: 60_000 }, (r) => done.push(r.file));
  assert.deepEqual(done.toSorted(), [a, b, c].toSorted());
  assert.deepEqual(totals(results), { files: 3, tests: 4, passed: 4, failed: 0, cancelled: 0, skipped: 0, todo: 0 });
  const lines = slowestLines(
    [
      { file: 'x', ms: 1200 },
      { file: 'y', ms: 93_456 },
      { file: 'z', ms: 5000, timedOut: true },
    ],
    2,
  );
  assert.deepEqual(lines, ['   93.5 s  y', '    5.0 s  z (timed out)']);
  const noted = slowestLines([{ file: 'w', ms: 20_000, timing: { loadMs: 4000, tailMs: 12_000 } }]);
  assert.deepEqual(noted, ['   20.0 s  w (4.0 s before its first test, 12.0 s after its last test)']);
});

test('test files are found per package in a stable order; a file belongs to its package', () => {
  const files = testFiles(root, ['scheduler'], true);
  assert.ok(files.includes('packages/scheduler/test/placement.test.ts'));
  assert.ok(files.includes('scripts/test/test-files.test.mjs'));
  assert.deepEqual(files, [
    ...files.filter((f) => f.startsWith('packages/')).toSorted(),
    ...files.filter((f) => f.startsWith('scripts/')).toSorted(),
  ]);
  assert.equal(packageOfFile('packages/vmm/test/api.test.ts'), 'vmm');
  assert.equal(packageOfFile('scripts/test/x.test.mjs'), 'scripts');
});

test('the per-file summary block of the spec reporter is dropped, other lines are kept', () => {
  const out =
    '✔ a (1ms)\nℹ tests 1\nℹ suites 0\nℹ pass 1\nℹ fail 0\nℹ cancelled 0\nℹ skipped 0\nℹ todo 0\nℹ duration_ms 12.5\nℹ a diagnostic\n';
  assert.equal(withoutFileSummary(out), '✔ a (1ms)\nℹ a diagnostic\n');
});

test('the runner itself refuses a bad FORM_TEST_FILE_TIMEOUT before running anything', () => {
  let err;
  try {
    execFileSync(process.execPath, [join(root, 'scripts/run-tests.mjs'), 'scheduler'], {
      env: { ...process.env, FORM_TEST_FILE_TIMEOUT: 'soon' },
      stdio: 'pipe',
    });
  } catch (e) {
    err = e;
  }
  assert.equal(err?.status, 2);
  assert.match(String(err.stderr), /FORM_TEST_FILE_TIMEOUT="soon"/);
});

test('lanes: listed unit files run beside the serial lane; off with FORM_TEST_UNIT_LANE=0; a bad value is refused', () => {
  const files = ['a.test.ts', 'b.test.ts', 'c.test.ts'];
  assert.deepEqual(splitLanes(files, ['b.test.ts', 'gone.test.ts']), [['a.test.ts', 'c.test.ts'], ['b.test.ts']]);
  assert.deepEqual(splitLanes(files, ['b.test.ts'], false), [files]);
  assert.deepEqual(splitLanes(['b.test.ts'], ['b.test.ts']), [['b.test.ts']], 'no empty lane');
  assert.equal(unitLaneEnabled({}), true);
  assert.equal(unitLaneEnabled({ FORM_TEST_UNIT_LANE: '1' }), true);
  assert.equal(unitLaneEnabled({ FORM_TEST_UNIT_LANE: '0' }), false);
  assert.throws(() => unitLaneEnabled({ FORM_TEST_UNIT_LANE: 'yes' }), /Cannot use FORM_TEST_UNIT_LANE="yes"/);
});

test('scripts/test-lanes.json names only test files that exist and never the serial-only kinds', () => {
  const unit = unitLaneFiles(root);
  assert.ok(unit.length > 0);
  for (const f of unit) {
    assert.ok(
      existsSync(join(root, f)),
      `${f} is listed in scripts/test-lanes.json but does not exist: remove it there`,
    );
    const text = readFileSync(join(root, f), 'utf8');
    assert.doesNotMatch(
      text,
      /requireOrSkip|integrationPrerequisites|qemu-system|ip netns|redis-server|fuzzInWorker|fast-check|devnetUp|runDriverCompliance/,
      `${f} needs the machine or much CPU: it belongs in the serial lane (remove it from scripts/test-lanes.json)`,
    );
  }
});

test('test files run with quiet logs and a compile cache that reaches the processes they start', async () => {
  const env = testEnv('/repo', { PATH: '/bin' });
  assert.equal(env.FORM_LOG_LEVEL, 'silent');
  assert.equal(env.NODE_COMPILE_CACHE, '/repo/node_modules/.cache/node-compile-cache');
  assert.equal(env.PATH, '/bin');
  const own = testEnv('/repo', { FORM_LOG_LEVEL: 'info', NODE_COMPILE_CACHE: '/elsewhere' });
  assert.deepEqual([own.FORM_LOG_LEVEL, own.NODE_COMPILE_CACHE], ['info', '/elsewhere']);
  // A grandchild (what a test's `form` or formationd is) sees the cache and uses it.
  const cache = join(dir, 'cache');
  const file = fixture(
    'cache.test.mjs',
    `import { execFileSync } from 'node:child_process';
test('grandchild', () => {
  const out = execFileSync(process.execPath, ['-e', 'const m = require("node:module"); console.log(process.env.NODE_COMPILE_CACHE, !!m.getCompileCacheDir?.())']);
  console.log('GRANDCHILD', String(out).trim());
});`,
  );
  const r = await runTestFile(file, {
    root,
    timeoutMs: 60_000,
    env: testEnv(root, { ...process.env, NODE_COMPILE_CACHE: cache }),
  });
  assert.equal(failed(r), false, r.output);
  assert.match(r.output, new RegExp(`GRANDCHILD ${cache} true`));
});

test('a file kept alive after its last test (an open handle) shows it in its timing', async () => {
  const file = fixture('linger.test.mjs', "test('quick', () => {});\nsetTimeout(() => {}, 3000);");
  const r = await runTestFile(file, { root, timeoutMs: 60_000 });
  assert.equal(failed(r), false, r.output);
  // One-sided: the 3 s timer keeps the process at least that long, whatever the load.
  assert.ok(r.timing.tailMs >= 2000, `tail ${r.timing.tailMs} ms`);
  assert.ok(r.timing.loadMs >= 0);
});

test('before its first test counts the loading and before-hooks, not the first test itself', async () => {
  const file = fixture(
    'first.test.mjs',
    `import { before } from 'node:test';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
describe('d', () => {
  before(() => sleep(300));
  test('first', () => sleep(3000));
  test('second', () => {});
});`,
  );
  const r = await runTestFile(file, { root, timeoutMs: 60_000 });
  assert.equal(failed(r), false, r.output);
  // The before-hook is in it; the 3 s first test is not (it used to be: node reports test:start late).
  assert.ok(r.timing.loadMs >= 300, `load ${r.timing.loadMs} ms`);
  assert.ok(r.timing.loadMs < 3000, `load ${r.timing.loadMs} ms`);
});
