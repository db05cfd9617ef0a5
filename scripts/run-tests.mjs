#!/usr/bin/env node
// Runs every package's tests (packages/*/test/**/*.test.ts) with node:test on the project's Node.
// The repository scripts' own tests (scripts/test) run with everything.
// `npm test -- vmm pack` runs only those packages. Test files run one at a time: integration tests
// boot VMs and create namespaces, and two cores are better spent on one of them at a time.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
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
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...extra, ...globs], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FORM_LOG_LEVEL: process.env.FORM_LOG_LEVEL ?? 'silent' },
});
process.exit(r.status ?? 1);
