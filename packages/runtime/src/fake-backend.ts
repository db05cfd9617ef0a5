import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Container, ContainerBackend, ContainerSpec } from './container-backend.ts';
import type { Meta, Result } from './types.ts';

// An in-memory ContainerBackend for unit tests: no root, no runc, no child process. Each container
// answers the VMDocker protocol (`/vmm/*`) with a fixed counter process (the process code is not run),
// so the manager's spawn/apply/checkpoint/restore/rebuild/outbox logic runs in milliseconds.
//
// The fake process's actions (the message's Action):
//   Inc     count += Data (default 1), writes count.txt to the workspace; Reply=yes answers the sender
//   Get     data = count
//   Boom    handler error 'kaboom', state unchanged
//   Send    a message to tag Target with Action from tag Send-Action (default Inc) and the Data
//   Spawn   a child process of tag Module with the Data as its code
//   Crash   the container dies mid-message (as on an out-of-memory kill): the call fails
// Tests kill a container from outside with `kill()` and make the next starts fail with `failStarts`.

const FORMAT = 'formation-fake-process/1';

interface FakeProcess {
  pid: string;
  owner: string;
  count: number;
}

/** One fake container: alive from start() until kill() or destroy(). */
export class FakeContainer implements Container {
  readonly id: string;
  readonly workspaceDir: string;
  readonly uid = process.getuid?.() ?? 0;
  readonly pid: number | undefined = undefined;
  /** Every call made, as path and body (what the manager sent). */
  readonly calls: Array<{ path: string; body: unknown }> = [];
  private readonly bundleDir: string;
  private running = true;
  private proc: FakeProcess | undefined;

  constructor(spec: ContainerSpec) {
    this.id = spec.id;
    this.bundleDir = spec.bundleDir;
    this.workspaceDir = join(spec.bundleDir, 'workspace');
  }

  alive(): boolean {
    return this.running;
  }

  /** The container dies (killed from outside): calls fail, alive() is false. */
  kill(): void {
    this.running = false;
  }

  async call(
    path: string,
    body: unknown,
    _timeoutMs: number,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    if (!this.running) throw new Error(`connect ECONNREFUSED: container ${this.id} is not running`);
    this.calls.push({ path, body });
    try {
      return { status: 200, body: await this.route(path, (body ?? {}) as Record<string, unknown>) };
    } catch (err) {
      if (!this.running) throw err;
      const status = (err as { status?: number }).status ?? 500;
      return { status, body: { status: 'error', error: (err as Error).message } };
    }
  }

  private async route(path: string, b: Record<string, unknown>): Promise<Record<string, unknown>> {
    switch (path) {
      case '/vmm/health':
        return { status: 'ok', pid: this.proc?.pid ?? null };
      case '/vmm/spawn': {
        if (this.proc) throw status(409, `process ${this.proc.pid} already runs in this container`);
        const pid = String(b.pid ?? '');
        if (!pid) throw status(400, 'spawn needs a pid');
        this.proc = { pid, owner: String(b.owner ?? ''), count: 0 };
        return { status: 'ok' };
      }
      case '/vmm/apply':
        return { status: 'ok', result: JSON.stringify(await this.apply(b.from as string, b.meta as Meta)) };
      case '/vmm/checkpoint': {
        const p = this.spawned();
        return { status: 'ok', state: JSON.stringify({ format: FORMAT, ...p }) };
      }
      case '/vmm/restore': {
        let snap: Partial<FakeProcess> & { format?: string };
        try {
          snap = JSON.parse(String(b.state)) as typeof snap;
        } catch {
          throw status(400, 'checkpoint state is not JSON');
        }
        if (snap.format !== FORMAT || typeof snap.pid !== 'string' || typeof snap.count !== 'number')
          throw status(400, 'checkpoint state has the wrong format');
        this.proc = { pid: snap.pid, owner: String(snap.owner ?? ''), count: snap.count };
        return { status: 'ok' };
      }
      default:
        throw status(404, `no route ${path}`);
    }
  }

  private spawned(): FakeProcess {
    if (!this.proc) throw status(409, 'no process spawned in this container');
    return this.proc;
  }

  private async apply(from: string, meta: Meta): Promise<Result> {
    const p = this.spawned();
    const r: Result = { messages: [], spawns: [], output: '', data: '' };
    const keep = meta.mode !== 'dry-run';
    switch (meta.action) {
      case 'Inc': {
        const count = p.count + Number(meta.data || 1);
        if (keep) {
          p.count = count;
          await writeFile(join(this.workspaceDir, 'count.txt'), String(count));
        }
        if (meta.params.Reply === 'yes')
          r.messages.push({ target: from, data: `count=${count}`, tags: { Action: 'Count' } });
        r.output = `inc to ${count}`;
        r.data = JSON.stringify({ count });
        break;
      }
      case 'Get':
        r.data = String(p.count);
        break;
      case 'Boom':
        r.error = 'kaboom';
        break;
      case 'Send':
        r.messages.push({
          target: meta.params.Target ?? '',
          data: meta.data,
          tags: { Action: meta.params['Send-Action'] ?? 'Inc' },
        });
        break;
      case 'Spawn':
        r.spawns.push({ module: meta.params.Module ?? '', data: meta.data, tags: {} });
        break;
      case 'Crash':
        this.running = false;
        throw new Error('socket hang up: the container died');
    }
    return r;
  }

  async destroy(): Promise<void> {
    this.running = false;
    await rm(this.bundleDir, { recursive: true, force: true });
  }
}

function status(code: number, message: string): Error {
  return Object.assign(new Error(message), { status: code });
}

/**
 * The fake backend: containers in memory, workspaces as plain directories under each bundle dir.
 *
 * @example
 * const backend = new FakeBackend();
 * const pm = new ProcessManager({ ...options, backend });
 * backend.containers.at(-1)?.kill(); // the manager rebuilds the process from its last checkpoint
 */
export class FakeBackend implements ContainerBackend {
  readonly name = 'fake';
  /** Every container started, in order (dead ones included). */
  readonly containers: FakeContainer[] = [];
  /** Ids removeStale() was asked to remove. */
  readonly staleRemoved: string[] = [];
  /** How many of the next start() calls fail (as runc does when it cannot create a container). */
  failStarts = 0;

  async start(spec: ContainerSpec): Promise<Container> {
    if (this.failStarts > 0) {
      this.failStarts--;
      throw new FormError('RUNTIME_CONTAINER', `Cannot start runtime container ${spec.id}: fake start failure`);
    }
    const c = new FakeContainer(spec);
    await mkdir(c.workspaceDir, { recursive: true, mode: 0o700 });
    this.containers.push(c);
    return c;
  }

  /** The containers still running. */
  live(): FakeContainer[] {
    return this.containers.filter((c) => c.alive());
  }

  async removeStale(id: string): Promise<void> {
    this.staleRemoved.push(id);
  }
}
