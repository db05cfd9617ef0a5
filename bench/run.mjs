#!/usr/bin/env node
// `npm run bench -- <suite>`: prints a first JSON line describing the machine, then runs
// bench/<suite>/index.ts, which prints one JSON line per metric: { bench, value, unit }.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const suites = readdirSync(here).filter((d) => existsSync(join(here, d, 'index.ts')));
const suite = process.argv[2];
if (!suite || !suites.includes(suite)) {
  console.error(`usage: npm run bench -- <suite> [args]\nsuites: ${suites.join(', ') || '(none yet)'}`);
  process.exit(2);
}
const kvm = spawnSync('sh', ['-c', 'test -r /dev/kvm && test -w /dev/kvm'], { stdio: 'ignore' }).status === 0;
console.log(
  JSON.stringify({
    machine: {
      cores: cpus().length,
      cpu: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      kvmDevice: kvm,
      note: kvm
        ? '/dev/kvm present; suites that boot VMs report whether KVM or TCG was used'
        : 'no usable /dev/kvm: TCG',
    },
  }),
);
const r = spawnSync(process.execPath, [join(here, suite, 'index.ts'), ...process.argv.slice(3)], {
  stdio: 'inherit',
  env: { ...process.env, FORM_LOG_LEVEL: process.env.FORM_LOG_LEVEL ?? 'silent' },
});
process.exit(r.status ?? 1);
