import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { FormError, formHome } from '@formation/interface';
// Types only at load time: the session (WireGuard, namespaces, keys) loads when ssh/proxy runs.
import type { FormnetSession } from '../formnet-session.ts';

/** Run `fn` with a temporary formnet session, always closing it (also on Ctrl-C / SIGTERM). */
async function withSession<T>(node: string | undefined, fn: (s: FormnetSession) => Promise<T>): Promise<T> {
  const { openFormnetSession } = await import('../formnet-session.ts');
  const session = await openFormnetSession({ node });
  const onSignal = () => {
    void session.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(session);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await session.close();
  }
}

export function parseTarget(target: string): { user: string; host: string } {
  const at = target.lastIndexOf('@');
  if (at <= 0 || at === target.length - 1) {
    throw new FormError('CLI_USAGE', `Cannot use "${target}" as the target: give it as user@host`, {
      hint: 'e.g. form ssh bigdog@hello-server.dev.formation.local or form ssh bigdog@10.129.0.2',
    });
  }
  return { user: target.slice(0, at), host: target.slice(at + 1) };
}

export function parsePortSpec(spec: string): { local: number; remote: number } {
  const m = /^(?:(\d{1,5}):)?(\d{1,5})$/.exec(spec);
  const local = Number(m?.[1] ?? m?.[2]);
  const remote = Number(m?.[2]);
  if (!m || remote < 1 || remote > 65535 || local < 0 || local > 65535) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot use port "${spec}": give [local-port:]remote-port, e.g. 8080 or 18080:8080`,
    );
  }
  return { local, remote };
}

/** `form ssh <user@host> [command...]`: ssh over a formnet session; exits with ssh's exit code. */
export async function sshTo(
  target: string,
  command: string[],
  opts: { identity?: string; port: string; node?: string },
): Promise<number> {
  const { user, host } = parseTarget(target);
  return withSession(opts.node, async (s) => {
    const ip = await s.resolve(host);
    const ssh = [
      'ssh',
      '-o',
      'StrictHostKeyChecking=accept-new',
      '-o',
      `UserKnownHostsFile=${join(formHome(), 'known_hosts')}`,
      '-o',
      'LogLevel=ERROR',
      '-o',
      'ConnectTimeout=15',
      '-p',
      opts.port,
      ...(opts.identity ? ['-i', opts.identity] : []),
      `${user}@${ip}`,
      ...command,
    ];
    const argv = process.env.SSHPASS ? ['sshpass', '-e', ...ssh] : ssh;
    // The same-host fallback's peer lives in its own namespace; otherwise ssh runs right here.
    const [file, args] = s.netns ? ['ip', ['netns', 'exec', s.netns, ...argv]] : [argv[0] as string, argv.slice(1)];
    const child = spawn(file, args, { stdio: 'inherit' });
    return new Promise<number>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code) => resolve(code ?? 255));
    });
  });
}

/** `form proxy <instance> <[local:]remote>`: forward 127.0.0.1:local to the instance over formnet. */
export async function proxy(instance: string, spec: string, opts: { for?: string; node?: string }): Promise<number> {
  const { local, remote } = parsePortSpec(spec);
  const seconds = opts.for === undefined ? undefined : Number(opts.for);
  if (seconds !== undefined && !(seconds > 0))
    throw new FormError('CLI_USAGE', `Cannot use --for ${opts.for}: give seconds > 0`);
  return withSession(opts.node, async (s) => {
    const ip = await s.resolve(instance);
    const server = createServer((sock: Socket) => {
      if (!s.netns) {
        // This namespace reaches formnet (permanent membership or temporary peer): relay directly.
        const up = connect(remote, ip);
        sock.pipe(up);
        up.pipe(sock);
        up.on('error', () => sock.destroy());
        sock.on('error', () => up.destroy());
        return;
      }
      // Same-host fallback: one relay per connection inside the session namespace, so bytes travel over WireGuard.
      const relay = spawn('ip', ['netns', 'exec', s.netns, 'socat', 'STDIO', `TCP:${ip}:${remote}`], {
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      sock.pipe(relay.stdin);
      relay.stdout.pipe(sock);
      const end = () => {
        sock.destroy();
        relay.kill();
      };
      sock.on('error', end);
      sock.on('close', () => relay.kill());
      relay.on('exit', () => sock.end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new FormError(
            'CLI_USAGE',
            `Cannot listen on 127.0.0.1:${local}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`,
          ),
        ),
      );
      server.listen(local, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : local;
    process.stdout.write(
      `Forwarding 127.0.0.1:${port} -> ${instance} (${ip}):${remote} over formnet${seconds ? ` for ${seconds} s` : '; Ctrl-C to stop'}\n`,
    );
    await new Promise<void>((resolve) => {
      if (seconds) setTimeout(resolve, seconds * 1000).unref();
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return 0;
  });
}
