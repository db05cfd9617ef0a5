import { execFile } from 'node:child_process';
import { FormError } from '@formation/interface';

export interface RunOptions {
  /** Run inside this network namespace (`ip netns exec <netns> …`). */
  netns?: string | undefined;
  /** Written to the command's stdin (keys go this way, never on the command line). */
  input?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** argv for `cmd args…`, wrapped in `ip netns exec` when a namespace is given. */
export function inNetns(netns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, [...args]];
}

/**
 * Run a host command; resolves with stdout, rejects with a NET_ERROR FormError carrying stderr.
 *
 * @example await run('wg', ['show', 'wg0', 'dump'], { netns: 'n1' })
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [file, argv] = inNetns(opts.netns, cmd, args);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      argv,
      {
        timeout: opts.timeoutMs ?? 15_000,
        env: { ...process.env, ...opts.env },
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const where = opts.netns ? ` in netns ${opts.netns}` : '';
          reject(
            new FormError(
              'NET_ERROR',
              `Cannot run \`${cmd} ${args.join(' ')}\`${where}: ${stderr.trim() || err.message}`,
              {
                details: { cmd, args: [...args], netns: opts.netns ?? null, stderr: stderr.trim() },
              },
            ),
          );
        } else resolve(stdout);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Like `run`, but resolves false instead of rejecting. */
export async function tryRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<boolean> {
  try {
    await run(cmd, args, opts);
    return true;
  } catch {
    return false;
  }
}
