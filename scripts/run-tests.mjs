#!/usr/bin/env node
// Runs every package's tests (packages/*/test/**/*.test.ts) with node:test on the project's Node.
// The repository scripts' own tests (scripts/test) run with everything.
// `npm test -- vmm pack` runs only those packages. Test files run one at a time: integration tests
// boot VMs and create namespaces, and two cores are better spent on one of them at a time.
// After the run it prints the skipped tests per package (a skipped describe counts once: node:test
// never sees the tests inside it) and fails when a package skips more than scripts/test-skips.json
// allows, so a plain `npm test` cannot silently skip more. `npm test -- --update-skips` records the
// counts of the packages just run as the new baseline.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

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
const globs = chosen.map((p) => `packages/${p}/test/**/*.test.ts`);
if (!wanted.length) globs.push('scripts/test/*.test.mjs');
console.log(`node ${process.version}; testing ${chosen.join(', ')}`);

// The human-readable reporter as before (or the caller's), plus one that lists skips to a file.
const tmp = mkdtempSync(join(tmpdir(), 'form-test-skips-'));
const skipsFile = join(tmp, 'skips.jsonl');
const reporters = extra.some((a) => a.startsWith('--test-reporter'))
  ? []
  : ['--test-reporter=spec', '--test-reporter-destination=stdout'];
reporters.push(
  `--test-reporter=${join(root, 'scripts/skip-reporter.mjs')}`,
  `--test-reporter-destination=${skipsFile}`,
);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...reporters, ...extra, ...globs], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FORM_LOG_LEVEL: process.env.FORM_LOG_LEVEL ?? 'silent' },
});

const skips = existsSync(skipsFile)
  ? readFileSync(skipsFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  : [];
rmSync(tmp, { recursive: true, force: true });
const counts = Object.fromEntries([...chosen, ...(wanted.length ? [] : ['scripts'])].map((p) => [p, 0]));
for (const s of skips) {
  const rel = relative(root, s.file ?? '');
  const pkg = rel.startsWith('packages/') ? rel.split('/')[1] : rel.split('/')[0];
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
  process.exit(r.status || 1);
}
process.exit(r.status ?? 1);
