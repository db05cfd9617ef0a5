import { spawn } from 'node:child_process';
import { FormError } from '@formation/interface';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, then closed. */
  input?: string;
  /** Every output line (stdout and stderr), for the build log. */
  onLine?: (line: string) => void;
  signal?: AbortSignal;
}

export interface RunResult {
  code: number;
  /** stdout + stderr interleaved, the last 64 KiB. */
  output: string;
  stdout: string;
}

const KEEP = 64 * 1024;

/** Run a program (argv, never a shell string from input) and collect its output. Never throws on exit code. */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) return reject(new Error('empty argv'));
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: opts.signal,
      killSignal: 'SIGKILL',
    });
    let output = '';
    let stdout = '';
    let partial = '';
    const take = (chunk: Buffer, isOut: boolean) => {
      const s = chunk.toString('utf8');
      output += s;
      if (output.length > 2 * KEEP) output = output.slice(-KEEP);
      if (isOut && stdout.length < 16 * 1024 * 1024) stdout += s;
      if (opts.onLine) {
        partial += s;
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) opts.onLine(l);
      }
    };
    child.stdout.on('data', (c: Buffer) => take(c, true));
    child.stderr.on('data', (c: Buffer) => take(c, false));
    let aborted: Error | undefined;
    child.on('error', (err) => {
      if (err.name === 'AbortError') {
        // Killed on abort: settle once its output pipes close, i.e. once every process that held
        // them (a sandbox's whole tree) is gone; at most 5 s later.
        aborted = err;
        setTimeout(() => reject(err), 5000).unref();
      } else if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(
          new FormError('HOST_UNSUPPORTED', `Cannot run ${cmd}: it is not installed on this host`, {
            hint: 'Install the host packages with scripts/setup.sh.',
          }),
        );
      } else reject(err);
    });
    child.on('close', (code, sig) => {
      if (aborted) return reject(aborted);
      if (partial && opts.onLine) opts.onLine(partial);
      resolve({ code: code ?? (sig ? 128 : 1), output: output.slice(-KEEP), stdout });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** True when a tool's output says the disk is full. */
export function looksLikeDiskFull(output: string): boolean {
  return /No space left on device|ENOSPC|Disk quota exceeded/i.test(output);
}

/** Run and throw a FormError (DISK_FULL when the disk is full, else `code`) on a non-zero exit. */
export async function runOk(argv: string[], what: string, opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    const tail = r.output.trim().split('\n').slice(-20).join('\n');
    if (looksLikeDiskFull(r.output)) {
      throw new FormError('DISK_FULL', `Cannot ${what}: no space left on the host disk\n${tail}`, {
        hint: 'Free space in the data/cache directory; cached layers and earlier Formpacks are intact.',
      });
    }
    throw new FormError('INTERNAL', `Cannot ${what}: ${argv[0]} exited with code ${r.code}\n${tail}`);
  }
  return r;
}
