import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDockerArchive } from '../src/docker-archive.ts';
import { runcUnavailable } from '../src/runc.ts';

export const CACHE_DIR = '/var/tmp/formation-runtime-cache';

/** Why integration tests cannot run here (undefined = they can). With FORM_REQUIRE_INTEGRATION=1 a reason is a failure. */
export async function integrationSkip(needRedis = false): Promise<string | undefined> {
  let reason = await runcUnavailable();
  if (!reason && needRedis) {
    try {
      execFileSync('redis-server', ['--version']);
    } catch {
      reason = 'redis-server is not installed (apt-get install redis-server)';
    }
  }
  if (reason && process.env.FORM_REQUIRE_INTEGRATION === '1')
    throw new Error(`integration prerequisite missing: ${reason}`);
  return reason;
}

export function tmp(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `formation-runtime-test-${prefix}-`));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

/** Our own redis-server on a free loopback port, AOF with fsync always so a restart keeps everything. */
export class TestRedis {
  readonly dir: string;
  port = 0;
  private child: ReturnType<typeof spawn> | undefined;

  constructor() {
    this.dir = tmp('redis');
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    this.child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--daemonize',
        'no',
      ],
      { stdio: 'ignore' },
    );
    for (let i = 0; i < 200; i++) {
      try {
        execFileSync('redis-cli', ['-p', String(this.port), 'ping'], { stdio: 'pipe' });
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    throw new Error('redis-server did not start');
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((r) => {
      c.once('exit', () => r());
      c.kill('SIGTERM');
    });
  }
}

/** Process code for the tests: counter with workspace file, deterministic randomness and time, a thrower and a looper. */
export const COUNTER_SRC = `
State.count = State.count ?? 0;
State.log = State.log ?? [];
Handlers.add('inc', 'Inc', (msg) => {
  State.count += Number(msg.Data || 1);
  const r = Math.floor(Math.random() * 1e6);
  State.log.push([msg.Sequence, r, Date.now()]);
  if (State.log.length > 20) State.log.shift();
  Workspace.write('count.txt', String(State.count));
  if (msg.Tags.Reply === 'yes') msg.reply('count=' + State.count, { Action: 'Count' });
  print('inc to ' + State.count);
  return { count: State.count, r };
});
Handlers.add('get', 'Get', () => State.count);
Handlers.add('boom', 'Boom', () => { State.count = -999; throw new Error('kaboom'); });
Handlers.add('loop', 'Loop', () => { State.count = -1; for (;;) {} });
Handlers.add('hog', 'Hog', () => { const a = []; for (let i = 0; ; i++) a.push(new Array(1e6).fill(i)); });
`;

/**
 * The smallest image: a `docker save` archive `<w>/<name>` (tag `t:1`, command `/f`) whose one layer,
 * made from `<w>/l`, holds the file `f` with `content`. For tests of import, refusal and tampering.
 */
export async function tinyArchive(
  w: string,
  o: { content?: string; name?: string; repoTag?: string } = {},
): Promise<{ archive: string; imageId: string }> {
  mkdirSync(join(w, 'l'), { recursive: true });
  writeFileSync(join(w, 'l/f'), o.content ?? 'x');
  const archive = join(w, o.name ?? 'a.tar');
  const { imageId } = await writeDockerArchive({
    out: archive,
    repoTag: o.repoTag ?? 't:1',
    layers: [{ dir: join(w, 'l') }],
    config: { Cmd: ['/f'] },
  });
  return { archive, imageId };
}

/** A tar written byte by byte, so a test can hold entries no well-behaved tool writes (../x, devices). */
export function rawTar(
  entries: Array<{ name: string; type?: string; data?: string | Buffer; linkname?: string; mode?: number }>,
): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100);
    h.write(`${(e.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(e.type ?? '0', 156);
    h.write(e.linkname ?? '', 157, 100);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
