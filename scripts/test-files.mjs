// The pieces of scripts/run-tests.mjs that its tests (scripts/test/test-files.test.mjs) use: which files
// to run, one file in its own `node --test` process under a deadline, and the report of the slowest.
import { spawn } from 'node:child_process';
import { existsSync, globSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Default wall-clock limit for one test file (seconds); `FORM_TEST_FILE_TIMEOUT` overrides it. */
export const DEFAULT_FILE_TIMEOUT_S = 900;

/**
 * The per-file limit in ms from `FORM_TEST_FILE_TIMEOUT` (whole seconds, > 0), else the default.
 * A bad value throws: a typo must not silently leave CI without a limit.
 */
export function fileTimeoutMs(env = process.env) {
  const raw = env.FORM_TEST_FILE_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_FILE_TIMEOUT_S * 1000;
  if (!/^[1-9][0-9]{0,6}$/.test(raw)) {
    throw new Error(
      `Cannot use FORM_TEST_FILE_TIMEOUT=${JSON.stringify(raw)}: it must be whole seconds above 0 (e.g. 1200). Unset it for the default of ${DEFAULT_FILE_TIMEOUT_S} s.`,
    );
  }
  return Number(raw) * 1000;
}

/** The test files of the chosen packages (sorted, package by package), plus scripts/test when asked. */
export function testFiles(root, packages, withScripts) {
  const files = [];
  for (const p of packages) files.push(...globSync(`packages/${p}/test/**/*.test.ts`, { cwd: root }).sort());
  if (withScripts) files.push(...globSync('scripts/test/*.test.mjs', { cwd: root }).sort());
  return files;
}

/** Which package a test file (relative path) belongs to: `packages/<p>/…` → p, `scripts/…` → scripts. */
export function packageOfFile(rel) {
  return rel.startsWith('packages/') ? rel.split('/')[1] : rel.split('/')[0];
}

/**
 * Runs one test file as `node --test <args> <file>` in its own process group, with the spec reporter
 * (unless `args` names a reporter) and scripts/file-reporter.mjs (skips and counts). Past `timeoutMs`
 * the whole group gets SIGTERM, then SIGKILL 5 s later, and the result says `timedOut`.
 * Resolves { file, ms, code, signal, timedOut, output, counts, skips, timing } — it never rejects
 * (`timing`: { loadMs, tailMs } from scripts/file-reporter.mjs, or null).
 */
export function runTestFile(file, { root, args = [], env = process.env, timeoutMs, killGraceMs = 5000 }) {
  const tmp = mkdtempSync(join(tmpdir(), 'form-test-file-'));
  const report = join(tmp, 'report.jsonl');
  const reporters = args.some((a) => a.startsWith('--test-reporter'))
    ? []
    : ['--test-reporter=spec', '--test-reporter-destination=stdout'];
  reporters.push(`--test-reporter=${join(root, 'scripts/file-reporter.mjs')}`, `--test-reporter-destination=${report}`);
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...reporters, ...args, file], {
    cwd: root,
    // Run as a test run of its own even when started from inside one (the runner's own tests).
    env: { ...env, NODE_TEST_CONTEXT: undefined },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks = [];
  child.stdout.on('data', (c) => chunks.push(c));
  child.stderr.on('data', (c) => chunks.push(c));
  let timedOut = false;
  const killGroup = (sig) => {
    try {
      process.kill(-child.pid, sig);
    } catch {}
  };
  let grace;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup('SIGTERM');
    grace = setTimeout(() => killGroup('SIGKILL'), killGraceMs);
  }, timeoutMs);
  running.add(killGroup);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(grace);
      running.delete(killGroup);
      const lines = existsSync(report) ? readFileSync(report, 'utf8').split('\n').filter(Boolean) : [];
      rmSync(tmp, { recursive: true, force: true });
      const events = lines.map((l) => JSON.parse(l));
      const skips = events.filter((e) => e.skip).map((e) => e.skip);
      const counts = events.find((e) => e.counts)?.counts ?? null;
      const timing = events.find((e) => e.timing)?.timing ?? null;
      resolve({
        file,
        ms: performance.now() - t0,
        code,
        signal,
        timedOut,
        output: Buffer.concat(chunks).toString('utf8'),
        counts,
        skips,
        timing,
      });
    });
  });
}

/** Kill functions of the files still running, so an interrupted runner can end their process groups. */
export const running = new Set();

/**
 * Runs `files` in lanes: each lane takes its files one at a time, the lanes run side by side.
 * `onDone(result)` is called as each file ends (in the order they end). Resolves with every result.
 */
export async function runLanes(lanes, opts, onDone = () => {}) {
  const results = [];
  await Promise.all(
    lanes.map(async (files) => {
      for (const file of files) {
        const r = await runTestFile(file, opts);
        results.push(r);
        onDone(r);
      }
    }),
  );
  return results;
}

/** Did a file fail (a failing test, a crash, a timeout, or no summary at all)? */
export function failed(r) {
  return r.timedOut || r.code !== 0 || !r.counts || r.counts.failed > 0 || r.counts.cancelled > 0;
}

/**
 * The `n` slowest files as lines `  123.4 s  path`, slowest first; a file that took long to start or to
 * end after its last test (≥ 3 s) says so.
 */
export function slowestLines(results, n = 15) {
  const s = (ms) => `${(ms / 1000).toFixed(1)} s`;
  return [...results]
    .sort((a, b) => b.ms - a.ms)
    .slice(0, n)
    .map((r) => {
      const notes = [
        r.timedOut ? 'timed out' : '',
        r.timing?.loadMs >= 3000 ? `${s(r.timing.loadMs)} before its first test` : '',
        r.timing?.tailMs >= 3000 ? `${s(r.timing.tailMs)} after its last test` : '',
      ].filter(Boolean);
      return `${s(r.ms).padStart(9)}  ${r.file}${notes.length ? ` (${notes.join(', ')})` : ''}`;
    });
}

/** Sums the per-file counts (tests, passed, failed, …). */
export function totals(results) {
  const t = { files: results.length, tests: 0, passed: 0, failed: 0, cancelled: 0, skipped: 0, todo: 0 };
  for (const r of results) for (const k of Object.keys(t)) if (k !== 'files' && r.counts) t[k] += r.counts[k] ?? 0;
  return t;
}

/** The spec reporter's output without its per-file summary block (`ℹ tests 3` … `ℹ duration_ms 12.3`): one total is printed at the end. */
export function withoutFileSummary(output) {
  return output.replace(/^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) [0-9.]+\n/gm, '');
}

/**
 * Splits `files` into lanes: the serial lane, and (unless `enabled` is false) a unit lane of the files
 * listed in scripts/test-lanes.json that runs beside it. Returns the non-empty lanes, serial first.
 */
export function splitLanes(files, unitFiles, enabled = true) {
  const unit = new Set(enabled ? unitFiles : []);
  const lanes = [files.filter((f) => !unit.has(f)), files.filter((f) => unit.has(f))];
  return lanes.filter((l) => l.length);
}

/** The unit lane's files from scripts/test-lanes.json (relative paths). */
export function unitLaneFiles(root) {
  const path = join(root, 'scripts/test-lanes.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')).unit : [];
}

/** Whether FORM_TEST_UNIT_LANE allows the unit lane (default yes; `0` runs every file in one lane). */
export function unitLaneEnabled(env = process.env) {
  const v = env.FORM_TEST_UNIT_LANE;
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new Error(
    `Cannot use FORM_TEST_UNIT_LANE=${JSON.stringify(v)}: it is 1 (default: unit files run beside the serial lane) or 0 (one lane).`,
  );
}

/**
 * The environment test files run with: FORM_LOG_LEVEL silent unless set, and a V8 compile cache in
 * node_modules/.cache/node-compile-cache unless NODE_COMPILE_CACHE is set (Node's own
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off). Every Node process of the run — test files, the `form`
 * CLI and the formationd they start — then compiles each module once instead of every time (a
 * formationd loads ~40 % faster). Node checks each entry against the source, so edits are safe.
 */
export function testEnv(root, env = process.env) {
  return {
    ...env,
    FORM_LOG_LEVEL: env.FORM_LOG_LEVEL ?? 'silent',
    NODE_COMPILE_CACHE: env.NODE_COMPILE_CACHE || join(root, 'node_modules/.cache/node-compile-cache'),
  };
}
