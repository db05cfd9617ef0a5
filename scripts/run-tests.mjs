#!/usr/bin/env node
// Runs every package's tests (packages/*/test/**/*.test.ts) with node:test on the project's Node.
// The repository scripts' own tests (scripts/test) run with everything.
// `npm test -- vmm pack` runs only those packages. Test files run one at a time, each in its own
// `node --test` process: integration tests boot VMs and create namespaces, and two cores are better
// spent on one of them at a time. Pure unit files listed in scripts/test-lanes.json run in a second
// lane beside them (one at a time; FORM_TEST_UNIT_LANE=0 turns it off). Each file has a wall-clock limit (FORM_TEST_FILE_TIMEOUT seconds,
// default 900): a hung file is killed and fails by name instead of holding CI until its own limit.
// A file's output is printed when it ends; at the end come the slowest files, then the skipped tests
// per package (a skipped describe counts once: node:test never sees the tests inside it), and the run
// fails when a package skips more than scripts/test-skips.json allows, so a plain `npm test` cannot
// silently skip more. `npm test -- --update-skips` records the counts of the packages just run.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  failed,
  fileTimeoutMs,
  packageOfFile,
  runLanes,
  running,
  slowestLines,
  splitLanes,
  testEnv,
  testFiles,
  totals,
  unitLaneEnabled,
  unitLaneFiles,
  withoutFileSummary,
} from './test-files.mjs';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const updateSkips = args.includes('--update-skips');
const wanted = args.filter((a) => !a.startsWith('-'));
const extra = args.filter((a) => a.startsWith('-') && a !== '--update-skips');
const packages = readdirSync(join(root, 'packages')).filter((p) => existsSync(join(root, 'packages', p, 'test')));
const chosen = wanted.length ? packages.filter((p) => wanted.includes(p)) : packages;
if (wanted.length && chosen.length !== wanted.length) {
  console.error(
    `Unknown package(s): ${wanted.filter((w) => !packages.includes(w)).join(', ')}. Known: ${packages.join(', ')}`,
  );
  process.exit(2);
}
let timeoutMs;
let laneOn;
try {
  timeoutMs = fileTimeoutMs();
  laneOn = unitLaneEnabled();
} catch (err) {
  console.error(err.message);
  process.exit(2);
}
const files = testFiles(root, chosen, !wanted.length);
const lanes = splitLanes(files, unitLaneFiles(root), laneOn);
const unitLane = new Set(lanes[1] ?? []);
console.log(
  `node ${process.version}; testing ${chosen.join(', ')}: ${files.length} files, at most ${timeoutMs / 1000} s each` +
    (unitLane.size ? `; ${unitLane.size} unit files (scripts/test-lanes.json) run beside the others` : ''),
);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    for (const kill of running) kill('SIGKILL');
    process.exit(130);
  });
}

const t0 = performance.now();
const results = await runLanes(lanes, { root, args: extra, timeoutMs, env: testEnv(root) }, (r) => {
  const lane = unitLane.has(r.file) ? ', unit lane' : '';
  process.stdout.write(`▶ ${r.file} (${(r.ms / 1000).toFixed(1)} s${lane})\n${withoutFileSummary(r.output)}`);
  if (r.timedOut) {
    console.log(
      `✖ ${r.file} timed out after ${timeoutMs / 1000} s and was killed (FORM_TEST_FILE_TIMEOUT raises the limit)`,
    );
  } else if (failed(r)) {
    console.log(`✖ ${r.file} failed (exit ${r.code ?? r.signal})`);
  }
});

const t = totals(results);
const bad = results.filter(failed);
console.log(
  `\ntests ${t.tests}, passed ${t.passed}, failed ${t.failed}, cancelled ${t.cancelled}, skipped ${t.skipped}, todo ${t.todo}; ` +
    `${t.files} files in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
);
console.log('slowest files:');
for (const line of slowestLines(results, 15)) console.log(line);
const lingering = results.filter((r) => r.timing?.tailMs >= 5000).sort((a, b) => b.timing.tailMs - a.timing.tailMs);
if (lingering.length) {
  console.log('files that stayed alive ≥ 5 s after their last test (after-hooks, or an open handle):');
  for (const r of lingering) console.log(`  ${(r.timing.tailMs / 1000).toFixed(1)} s  ${r.file}`);
}
if (bad.length) {
  console.log(`failed files (${bad.length}):`);
  for (const r of bad) console.log(`  ${r.file}${r.timedOut ? ' (timed out)' : ''}`);
}

const skips = results.flatMap((r) => r.skips);
const counts = Object.fromEntries([...chosen, ...(wanted.length ? [] : ['scripts'])].map((p) => [p, 0]));
for (const s of skips) {
  const pkg = packageOfFile(relative(root, s.file ?? ''));
  counts[pkg] = (counts[pkg] ?? 0) + 1;
}
const baselinePath = join(root, 'scripts/test-skips.json');
const baseline = existsSync(baselinePath) ? JSON.parse(readFileSync(baselinePath, 'utf8')) : {};
const allowed = baseline.skips ?? {};
const over = Object.entries(counts).filter(([p, n]) => n > (allowed[p] ?? 0));
console.log(
  `skipped per package (baseline scripts/test-skips.json): ${Object.entries(counts)
    .map(([p, n]) => `${p} ${n}/${allowed[p] ?? 0}`)
    .join(', ')}`,
);
for (const s of skips) console.log(`  skipped: ${relative(root, s.file ?? '?')}: ${s.name} — ${s.reason}`);
if (updateSkips) {
  writeFileSync(baselinePath, `${JSON.stringify({ ...baseline, skips: { ...allowed, ...counts } }, null, 2)}\n`);
  console.log(`skip baseline updated for ${Object.keys(counts).join(', ')}`);
} else if (over.length) {
  console.error(
    `More tests skipped than scripts/test-skips.json allows: ${over.map(([p, n]) => `${p} ${n} > ${allowed[p] ?? 0}`).join(', ')}. ` +
      'Install the prerequisites (scripts/setup.sh), make the test run without them, or, if the skip is meant, ' +
      'record it with `npm test -- <package> --update-skips`.',
  );
  process.exit(1);
}
process.exit(bad.length ? 1 : 0);
