// `form` start-up: how long a command takes before it does its work, and how much memory it needs.
// Each number is the median of RUNS runs (`npm run bench -- cli [runs]`, default 9) of the real launcher
// (packages/cli/bin/form.js) in a child process. `warm` = Node's compile cache filled by an earlier run
// (what a user sees from the second run on); `nocache` = NODE_DISABLE_COMPILE_CACHE=1 (every file is
// type-stripped and compiled again, like the very first run after an install or an edit).
// FORM_BENCH_BIN=<path to another form.js> times another checkout (before/after comparisons).
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { report } from '../report.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = process.env.FORM_BENCH_BIN ?? join(root, 'packages/cli/bin/form.js');
const runs = Math.max(1, Number(process.argv[2] ?? 9) || 9);
const dir = await mkdtemp(join(tmpdir(), 'formation-bench-cli-'));
const home = join(dir, 'home');
const cacheDir = join(dir, 'compile-cache');
const rssFile = join(dir, 'rss');
// Loaded with --import only in the RSS runs: writes the child's peak RSS (KiB) when it exits.
const rssHook = join(dir, 'rss-hook.mjs');
await writeFile(
  rssHook,
  `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));\n`,
);
const emptyTs = join(dir, 'empty.ts');
await writeFile(emptyTs, 'const n: number = 0;\nexport default n;\n');

interface Run {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run node with `args` (cwd: repository root); resolves when the process has exited. */
function runNode(args: string[], env: Record<string, string> = {}, onSpawn?: (t0: number) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORM_HOME: home, NODE_COMPILE_CACHE: cacheDir, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onSpawn?.(t0);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ ms: performance.now() - t0, code, stdout, stderr }));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Median (and fastest) wall time of `args`; checks the exit code so a broken command is not timed as a fast one. */
async function timeCommand(
  args: string[],
  expectCode: number,
  env: Record<string, string> = {},
): Promise<{ median: number; min: number }> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await runNode(args, env);
    if (r.code !== expectCode) {
      throw new Error(`node ${args.join(' ')} exited ${r.code}, expected ${expectCode}\n${r.stdout}${r.stderr}`);
    }
    ms.push(r.ms);
  }
  return { median: median(ms), min: Math.min(...ms) };
}

/** One metric: the median, with the fastest run alongside (the machine is shared: the minimum shows noise). */
function reportTime(bench: string, t: { median: number; min: number }, extra: Record<string, unknown> = {}): void {
  report(bench, t.median, 'ms', { min: Math.round(t.min * 10) / 10, runs, ...extra });
}

async function peakRssMiB(args: string[], env: Record<string, string> = {}): Promise<number> {
  const kib: number[] = [];
  for (let i = 0; i < Math.min(runs, 3); i++) {
    await runNode(['--import', rssHook, ...args], env);
    kib.push(Number(await readFile(rssFile, 'utf8')));
  }
  return median(kib) / 1024;
}

/** Median time from spawning `form …` to its first TCP connection to the state API. */
async function timeToFirstRequest(args: string[]): Promise<{ median: number; min: number }> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t0 = 0;
    let first = -1;
    const server: Server = createServer((sock) => {
      if (first < 0) first = performance.now() - t0;
      sock.destroy(); // the CLI then fails with "cannot reach": only the start-up is measured
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    await runNode([bin, ...args], { FORM_STATE_URL: `http://127.0.0.1:${port}` }, (t) => {
      t0 = t;
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (first < 0) throw new Error(`form ${args.join(' ')} made no request`);
    ms.push(first);
  }
  return { median: median(ms), min: Math.min(...ms) };
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

try {
  const kit = await runNode([bin, 'kit', 'init', '--yes']); // a developer key, as a user has; also fills the cache
  if (kit.code !== 0) throw new Error(`form kit init failed: ${kit.stderr}`);
  const validate = ['pack', 'validate', 'examples/hello-server'];
  const dead = { FORM_STATE_URL: `http://127.0.0.1:${await deadPort()}` };
  // Warm the compile cache for every path measured below.
  for (const args of [['--help'], ['--version'], ['pack', '--help'], validate]) await runNode([bin, ...args]);
  await runNode([bin, 'manage', 'list'], dead);

  reportTime('cli.node_bare_ms', await timeCommand(['-e', '0'], 0), { note: 'node -e 0: the floor' });
  reportTime('cli.node_bare_ts_ms', await timeCommand([emptyTs], 0), {
    note: 'one tiny .ts file: the floor with type stripping',
  });
  reportTime('cli.help_ms', await timeCommand([bin, '--help'], 0), { cache: 'warm' });
  reportTime('cli.version_ms', await timeCommand([bin, '--version'], 0), { cache: 'warm' });
  reportTime('cli.noun_help_ms', await timeCommand([bin, 'pack', '--help'], 0), { cache: 'warm' });
  reportTime('cli.pack_validate_ms', await timeCommand([bin, ...validate], 0), {
    cache: 'warm',
    dir: 'examples/hello-server',
  });
  reportTime('cli.manage_list_ms', await timeCommand([bin, 'manage', 'list'], 2, dead), {
    cache: 'warm',
    note: 'nothing listening: start-up, key, one failed request, error message',
  });
  reportTime('cli.manage_list_first_request_ms', await timeToFirstRequest(['manage', 'list']), { cache: 'warm' });
  reportTime(
    'cli.manage_get_status_first_request_ms',
    await timeToFirstRequest(['manage', 'get', 'status', 'hello-server']),
    { cache: 'warm' },
  );
  const off = { NODE_DISABLE_COMPILE_CACHE: '1' };
  reportTime('cli.node_bare_ts_nocache_ms', await timeCommand([emptyTs], 0, off), { cache: 'disabled' });
  reportTime('cli.help_nocache_ms', await timeCommand([bin, '--help'], 0, off), { cache: 'disabled' });
  reportTime('cli.pack_validate_nocache_ms', await timeCommand([bin, ...validate], 0, off), { cache: 'disabled' });
  reportTime('cli.manage_list_nocache_ms', await timeCommand([bin, 'manage', 'list'], 2, { ...dead, ...off }), {
    cache: 'disabled',
  });
  report('cli.help_rss_mib', await peakRssMiB([bin, '--help']), 'MiB', { cache: 'warm' });
  report('cli.pack_validate_rss_mib', await peakRssMiB([bin, ...validate]), 'MiB', { cache: 'warm' });
  report('cli.manage_list_rss_mib', await peakRssMiB([bin, 'manage', 'list'], dead), 'MiB', { cache: 'warm' });
  report('cli.help_nocache_rss_mib', await peakRssMiB([bin, '--help'], off), 'MiB', { cache: 'disabled' });
} finally {
  await rm(dir, { recursive: true, force: true });
}
