/**
 * The shared test kit (`@formation/interface/testing`, Node only): `requireOrSkip` for tests that need
 * this machine to have something, `until` for polling instead of fixed sleeps, `runProgram` to run a
 * program and keep what it wrote, `sshArgv` for logging in
 * to a test VM, `fuzzParams` for fast-check properties bounded by time, `fuzzInWorker` / `fuzzWorker` for
 * fuzz properties run under a watchdog, `makeZombie` for
 * process-liveness checks, `selfSignedCert` / `writePebbleConfig` for TLS and ACME tests (openssl),
 * `startWithFirstLine` / `stopChildren` for helper programs a test runs (in namespaces, say),
 * `tempDevnet` / `namespacesLeft` for a devnet (or other namespaces) a test file brings up and down.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { integrationPrerequisites } from './integration.ts';

export interface TestNeeds {
  /** Needs root (namespaces, TAP, WireGuard, chroot). */
  root?: boolean;
  /** Programs that must be on PATH. */
  programs?: string[];
  /** Files that must exist: a path, or `{ path, name }` to name what is missing (e.g. the apt package). */
  files?: Array<string | { path: string; name: string }>;
  /** Any other check: why the test cannot run here, or '' / false / undefined when it can. */
  check?: () => string | false | undefined;
}

/**
 * The node:test `skip` value for a test that needs `needs`: the reason it cannot run here, or false when
 * it can. With FORM_REQUIRE_INTEGRATION=1 (what CI and scripts/test.sh set) a missing prerequisite throws
 * instead, so a test never passes by skipping what it was meant to prove.
 *
 * @example
 * const skip = requireOrSkip('web e2e test', { root: true, programs: ['qemu-system-x86_64'] });
 * describe('…', { skip }, () => { … });
 */
export function requireOrSkip(what: string, needs: TestNeeds): string | false {
  const why = integrationPrerequisites(what, needs);
  if (why) return why;
  const missing = (needs.files ?? [])
    .map((f) => (typeof f === 'string' ? { path: f, name: f } : f))
    .filter((f) => !existsSync(f.path))
    .map((f) => f.name);
  const reason = missing.length ? `missing ${missing.join(', ')}` : needs.check?.() || '';
  if (!reason) return false;
  if (process.env.FORM_REQUIRE_INTEGRATION === '1') throw new Error(`${what} ${reason}`);
  return reason;
}

/**
 * Polls `fn` every `everyMs` until it returns a truthy value (returned) or `timeoutMs` passes (throws
 * "timed out waiting for <what>", with the last error `fn` threw). A throwing `fn` is retried.
 */
export async function until<T>(
  what: string,
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** The state letter of process `pid` in /proc (`R`, `S`, `Z`…), or undefined when there is none. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0];
  } catch {
    return undefined;
  }
}

/**
 * A zombie (ended, not reaped) and its parent that still runs: `sleep 30` becomes the parent of a
 * background `sleep 1` and never waits for it, so once that ends it stays a zombie until the parent
 * goes. (A background `true` could end, and be reaped by sh, before the exec: seen in CI.) Resolves
 * when /proc shows the zombie; the parent is killed after the test.
 *
 * @example
 * const { zombie, parent } = await makeZombie(t);
 * assert.equal(processAlive(zombie), false);
 */
export async function makeZombie(t: {
  after: (fn: () => void) => void;
}): Promise<{ zombie: number; parent: ChildProcess }> {
  const parent = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => parent.kill('SIGKILL'));
  let out = '';
  parent.stdout?.on('data', (d) => {
    out += d;
  });
  const zombie = await until('the background pid', () => Number(out.trim()) || undefined, 10_000, 20);
  await until('the background process to be a zombie', () => procState(zombie) === 'Z', 10_000, 20);
  return { zombie, parent };
}

/**
 * A fresh self-signed P-256 certificate made by openssl, valid one day: `<dir>/<name>.key` (no
 * passphrase) and `<dir>/<name>.pem`, subject `CN=<cn>`, with `subjectAltName=<san>` when given.
 *
 * @example
 * const { keyFile, certFile } = selfSignedCert(dir, 'site', 'hello.test', 'DNS:hello.test');
 */
export function selfSignedCert(
  dir: string,
  name: string,
  cn: string,
  san?: string,
): { keyFile: string; certFile: string } {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.pem`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      ...(san ? ['-addext', `subjectAltName=${san}`] : []),
    ],
    { stdio: 'ignore' },
  );
  return { keyFile, certFile };
}

/**
 * The files a test CA (Pebble, RFC 8555) starts from, in `dir`: its API certificate for `caIp`
 * (`api.key`, `api.pem`; clients trust `api.pem` to reach the API) and `pebble.json` (ACME API on
 * `caIp:14000`, management on `:15000`, challenges to ports 80 and 443, no OCSP, no EAB).
 * Returns the config file: `pebble -config <it>`.
 */
export function writePebbleConfig(dir: string, caIp: string): string {
  const { keyFile, certFile } = selfSignedCert(dir, 'api', 'pebble', `IP:${caIp}`);
  const config = join(dir, 'pebble.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `${caIp}:14000`,
        managementListenAddress: `${caIp}:15000`,
        certificate: certFile,
        privateKey: keyFile,
        httpPort: 80,
        tlsPort: 443,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  return config;
}

/**
 * Start `argv` (stdin, stdout and stderr piped) and add it to `o.children`; each line it prints goes to
 * `onLine`, what it writes to stderr to `o.onStderr`. Resolves with the child at its first line;
 * rejects when it exits before ("<label> exited <code>: <o.why()>").
 *
 * @example
 * const node = await startWithFirstLine(['ip', 'netns', 'exec', ns, process.execPath, script], (l) => lines.push(l), { children });
 */
export function startWithFirstLine(
  argv: string[],
  onLine: (line: string) => void,
  o: { children: ChildProcess[]; label?: string; onStderr?: (d: string) => void; why?: () => string },
): Promise<ChildProcess> {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  o.children.push(child);
  child.stderr?.on('data', (d) => o.onStderr?.(String(d)));
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    let first = true;
    rl.on('line', (l) => {
      onLine(l);
      if (first) resolve(child);
      first = false;
    });
    child.once('exit', (code) => reject(new Error(`${o.label ?? argv[0]} exited ${code}: ${o.why?.() ?? ''}`)));
  });
}

/** End every child still running: SIGTERM, then SIGKILL for one that has not exited after `graceMs`. */
export async function stopChildren(children: ChildProcess[], graceMs = 3000): Promise<void> {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise((r) => {
        timer = setTimeout(r, graceMs);
      });
      await Promise.race([gone, grace]);
      clearTimeout(timer); // a grace timer left running would hold the test process open
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
  }
}

/** How a program run by `runProgram` ended, with everything it wrote. */
export interface ProgramRun {
  /** Exit code (-1 when ended by a signal). */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `argv` as a child process (no shell) with `env` added to this process's environment and NO_COLOR=1
 * (CLI text is asserted without colours), `input` on stdin; resolves when it ends, whatever its exit
 * code. Rejects only when it cannot be started.
 *
 * @example
 * const r = await runProgram([process.execPath, formBin, 'manage', 'list', '--json'], { FORM_HOME: home });
 * assert.equal(r.code, 0, r.stderr);
 */
export function runProgram(
  argv: string[],
  env: Record<string, string> = {},
  opts: { cwd?: string; input?: string } = {},
): Promise<ProgramRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      cwd: opts.cwd,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.on('error', () => undefined); // a program that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** What `sshArgv` logs in with; the defaults are the login of the example Formpacks (examples/hello-server). */
export interface SshLogin {
  user?: string;
  password?: string;
  /** SSH port (default 22). */
  port?: number;
  /** Seconds to wait for the TCP connection (default 10). */
  connectTimeoutS?: number;
  /** Offer the password only, none of the keys of whoever runs the test: proves password login works. */
  passwordOnly?: boolean;
  /**
   * Log in with this private key instead of a password (no sshpass; BatchMode, so a refused key fails
   * at once instead of prompting): proves public-key login works.
   */
  keyFile?: string;
}

/**
 * argv of a non-interactive OpenSSH login with a password (through sshpass) that runs `script`: no host
 * key prompt or record (test VMs get new keys every boot), errors only. Prefix it to run it elsewhere:
 * `['ip', 'netns', 'exec', ns, ...sshArgv(ip, 'hostname')]` or `form devnet exec … laptop -- …`.
 *
 * @example
 * await execFileP('ip', ['netns', 'exec', ns, ...sshArgv('10.129.1.2', 'cat ~/note.txt')]);
 */
export function sshArgv(host: string, script: string, login: SshLogin = {}): string[] {
  const { user = 'bigdog', password = 'bigdog123', port, connectTimeoutS = 10, passwordOnly = false, keyFile } = login;
  return [
    ...(keyFile ? ['ssh', '-i', keyFile, '-o', 'BatchMode=yes'] : ['sshpass', '-p', password, 'ssh']),
    ...(port ? ['-p', String(port)] : []),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `ConnectTimeout=${connectTimeoutS}`,
    ...(passwordOnly ? ['-o', 'PreferredAuthentications=password', '-o', 'PubkeyAuthentication=no'] : []),
    `${user}@${host}`,
    script,
  ];
}

// ---- a devnet for one test file -----------------------------------------------------------------------------

/** A devnet one test file owns, made by `tempDevnet`: `up()` in its before hook, `down()` in its after hook. */
export interface TempDevnet<S, D> {
  /** The devnet's directory: '' until `up()` made it. */
  readonly dir: string;
  /** Make a fresh directory under the OS temp dir and bring the devnet up in it. */
  up(): Promise<S>;
  /**
   * Bring it down, then remove its directory (kept when FORM_KEEP_TEST_DATA=1, to look at the nodes'
   * logs). A failing stop is ignored (a devnet that came half up still gets removed): resolves with what
   * the stop answered, undefined when it failed or `up()` never ran.
   */
  down(): Promise<D | undefined>;
}

/**
 * The set-up every devnet test file shared: a temp directory named `name…`, `start(dir)` (the node
 * package's `devnetUp`, here as a parameter since this kit is below it) and `stop(dir)` (`devnetDown`).
 *
 * @example
 * const devnet = tempDevnet('form-replicas-devnet-', (dir) => devnetUp({ nodes: 4, dir, prefix: 'fdq' }), devnetDown);
 * before(async () => { s = await devnet.up(); });
 * after(async () => { await devnet.down(); assert.deepEqual(await namespacesLeft('fdq'), [], 'namespaces left'); });
 */
export function tempDevnet<S, D>(
  name: string,
  start: (dir: string) => Promise<S>,
  stop: (dir: string) => Promise<D>,
): TempDevnet<S, D> {
  let dir = '';
  return {
    get dir() {
      return dir;
    },
    async up() {
      dir = mkdtempSync(join(tmpdir(), name));
      return start(dir);
    },
    async down() {
      if (!dir) return undefined;
      const answer = await stop(dir).catch(() => undefined);
      if (process.env.FORM_KEEP_TEST_DATA !== '1') rmSync(dir, { recursive: true, force: true });
      return answer;
    },
  };
}

/**
 * Network namespaces (`ip netns list`) still there that a test made: those whose name starts with
 * `mine` (a prefix), or that are in `mine` (a list, for prefixes another test's names may start with).
 *
 * @example assert.deepEqual(await namespacesLeft('fdq'), [], 'namespaces left');
 */
export async function namespacesLeft(mine: string | readonly string[]): Promise<string[]> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile('ip', ['netns', 'list'], (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  const names = out
    .split('\n')
    .map((l) => l.split(' ')[0] as string)
    .filter(Boolean);
  return names.filter((ns) => (typeof mine === 'string' ? ns.startsWith(mine) : mine.includes(ns)));
}

// ---- fuzzing in a worker with a watchdog ------------------------------------------------------------------

/**
 * The fast-check parameters every fuzz property uses: at most `numRuns` inputs, and no new input after
 * `budgetMs` (FORM_FUZZ_MS, default 2.5 s), which ends the property without failing it, so a slow
 * machine tries fewer inputs instead of timing out; FORM_FUZZ_SEED replays a run.
 *
 * @example
 * await fc.assert(fc.asyncProperty(fc.uint8Array(), check), fuzzParams(2000));
 */
export function fuzzParams(
  numRuns: number,
  budgetMs = Number(process.env.FORM_FUZZ_MS ?? 2500),
): { numRuns: number; interruptAfterTimeLimit: number; markInterruptAsFailure: false; seed?: number } {
  const seed = process.env.FORM_FUZZ_SEED ? Number(process.env.FORM_FUZZ_SEED) : undefined;
  return {
    numRuns,
    interruptAfterTimeLimit: budgetMs,
    markInterruptAsFailure: false,
    ...(seed !== undefined ? { seed } : {}),
  };
}

/** What a fuzz worker gets from `fuzzWorker()`: which property to run, and where to leave the current input. */
export interface FuzzWorker<D = unknown> {
  /** The property to run (the `name` given to `fuzzInWorker`). */
  name: string;
  /** The `data` given to `fuzzInWorker` (a fixed input, a directory …). */
  data: D;
  /** Record the input about to be tried, so the watchdog can name it if it hangs or crashes the worker. */
  record(input: Uint8Array): void;
  /** Report how the run ended (resolves: ok; rejects: the property failed) with the number of inputs tried. */
  finish(run: Promise<unknown>, runs: () => number): void;
}

/**
 * The worker side of `fuzzInWorker`: in a worker started by it, what to run; `null` anywhere else (so a
 * test file can be both the main side and the worker).
 *
 * @example
 * const w = fuzzWorker<{ fixed?: string }>();
 * if (w) { let runs = 0; w.finish(fc.assert(fc.asyncProperty(arb, async (x) => { w.record(enc(x)); runs++; await check(x); })), () => runs); }
 */
export function fuzzWorker<D = unknown>(): FuzzWorker<D> | null {
  if (isMainThread || !(workerData as { formFuzz?: boolean } | null)?.formFuzz) return null;
  const { name, data, shared } = workerData as { name: string; data: D; shared: SharedArrayBuffer };
  const len = new Int32Array(shared, 0, 1);
  const bytes = new Uint8Array(shared, 4);
  return {
    name,
    data,
    record(input) {
      const b = input.subarray(0, bytes.length);
      bytes.set(b);
      Atomics.store(len, 0, b.length);
    },
    finish(run, runs) {
      run.then(
        () => parentPort?.postMessage({ ok: true, runs: runs() }),
        (e: Error) => parentPort?.postMessage({ ok: false, runs: runs(), message: e.message }),
      );
    },
  };
}

export interface FuzzInWorkerOptions {
  /** The test file to run as the worker (`new URL(import.meta.url)`); it calls `fuzzWorker()`. */
  url: URL;
  /** The property to run. */
  name: string;
  data?: unknown;
  /** Wall-clock limit for the whole run: past it the worker is ended and the test fails naming the input. */
  watchdogMs: number;
  /** Room for the current input (bytes; longer inputs are cut). Default 64 KiB. */
  inputBytes?: number;
  /** What is under test, for the messages: "the parser", "the reader". */
  subject: string;
  /** How to print a recorded input in a failure (default: as UTF-8, JSON-quoted). */
  show?: (input: Uint8Array) => string;
}

/**
 * Run one fuzz property in a worker thread with a watchdog: resolves with the number of inputs tried;
 * rejects, naming the input, when the property fails, the code under test hangs (the worker is ended)
 * or throws out of everything (an uncaught exception: a crash of the whole process in production).
 */
export function fuzzInWorker(o: FuzzInWorkerOptions): Promise<{ runs: number }> {
  const shared = new SharedArrayBuffer(4 + (o.inputBytes ?? 64 * 1024));
  const show = o.show ?? ((b: Uint8Array) => JSON.stringify(Buffer.from(b).toString('utf8')));
  const current = () => show(new Uint8Array(shared, 4, Atomics.load(new Int32Array(shared, 0, 1), 0)).slice());
  const w = new Worker(o.url, { workerData: { formFuzz: true, name: o.name, data: o.data, shared } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error(`${o.subject} hung (> ${o.watchdogMs} ms) on ${current()}`));
    }, o.watchdogMs);
    w.once('message', (m: { ok: boolean; runs: number; message?: string }) => {
      clearTimeout(timer);
      void w.terminate();
      if (m.ok) resolve({ runs: m.runs });
      else reject(new Error(`after ${m.runs} inputs: ${m.message}`));
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`uncaught in ${o.subject} (a crash of the whole process) on ${current()}: ${e.stack}`));
    });
  });
}
