// Formpack builder bench: cold build (empty cache), warm builds (base cached), rebuild of an existing ID,
// and the image size of examples/hello-server. Prints one JSON line per metric: { bench, value, unit }.
// `npm run bench -- pack [--skip-cold]`. Needs root (mmdebstrap, chroot).
import { spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Builder, loadSpec } from '@formation/pack';

const example = new URL('../../examples/hello-server', import.meta.url).pathname;
const skipCold = process.argv.includes('--skip-cold');
const sharedCache = process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache';

function emit(bench: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ bench, value: Math.round(value * 1000) / 1000, unit, ...extra }));
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, (performance.now() - t) / 1000];
}

if (process.getuid?.() !== 0) {
  console.error('bench/pack: building Formpacks needs root');
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), 'form-bench-pack-'));
const coldCache = `/var/tmp/formation-pack-bench-${process.pid}`;
try {
  const app = join(work, 'hello-server');
  cpSync(example, app, { recursive: true });
  const { spec, dir } = await loadSpec(app);

  if (!skipCold) {
    // Cold: nothing cached (the base is built with mmdebstrap, .debs downloaded).
    const cold = new Builder({ dataDir: join(work, 'cold-data'), cacheDir: coldCache });
    const [r, s] = await timed(() => cold.build({ spec, dir, owner: 'bench' }));
    emit('pack.cold_build.hello-server', s, 's', { cached: r.cached });
    // Base cached, a package set never installed before: one apt-get install into a copy of the base.
    const more = { ...spec, install: [...spec.install, 'curl'] };
    const [, s2] = await timed(() => cold.build({ spec: more, dir, owner: 'bench' }));
    emit('pack.warm_build.new_package_set', s2, 's', { install: more.install });
  }

  // Warm: base and package layer cached, new ID (the app changed).
  const warm = new Builder({ dataDir: join(work, 'warm-data'), cacheDir: sharedCache });
  await warm.build({ spec, dir, owner: 'bench' }); // make sure the shared cache has the layers
  appendFileSync(join(app, 'hello.py'), `# bench ${Date.now()}\n`);
  const [w, ws] = await timed(() => warm.build({ spec, dir, owner: 'bench' }));
  emit('pack.warm_build.hello-server', ws, 's', { cached: w.cached });

  // Existing ID: hash the context, find the manifest.
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push((await timed(() => warm.build({ spec, dir, owner: 'bench' })))[1]);
  times.sort((a, b) => a - b);
  emit('pack.rebuild_existing_id', times[2]! * 1000, 'ms', {
    runs: times.length,
    minMs: Math.round(times[0]! * 1e6) / 1e3,
    maxMs: Math.round(times.at(-1)! * 1e6) / 1e3,
  });
  const cli = spawnSync(
    process.execPath,
    [new URL('../../packages/cli/bin/form.js', import.meta.url).pathname, 'pack', 'build', app, '--local', '--json'],
    { env: { ...process.env, FORM_HOME: join(work, 'cli-home'), FORM_PACK_CACHE: sharedCache }, encoding: 'utf8' },
  );
  if (cli.status === 0) {
    const t = performance.now();
    spawnSync(
      process.execPath,
      [new URL('../../packages/cli/bin/form.js', import.meta.url).pathname, 'pack', 'build', app, '--local', '--json'],
      { env: { ...process.env, FORM_HOME: join(work, 'cli-home'), FORM_PACK_CACHE: sharedCache } },
    );
    emit('pack.rebuild_existing_id.cli_process', (performance.now() - t) / 1000, 's', {
      note: 'whole `form pack build --local` process, including Node and CLI start-up',
    });
  }

  emit('pack.image_size.hello-server.qcow2', w.manifest.artifacts.disk.bytes / 2 ** 20, 'MiB');
  emit('pack.image_size.hello-server.initramfs', w.manifest.artifacts.initramfs.bytes / 2 ** 20, 'MiB');
} finally {
  rmSync(work, { recursive: true, force: true });
  rmSync(coldCache, { recursive: true, force: true });
}
