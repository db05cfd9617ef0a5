import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { FormError } from '@formation/interface';

/** Longest QMP / guest-agent line we buffer (a guest-exec reply with base64 output fits easily). */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** A QMP event as QEMU sends it. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpClientOptions {
  /** `qmp`: reads the greeting and negotiates `qmp_capabilities`, commands carry ids.
   *  `qga`: the guest agent (no greeting, replies in order, resynchronized with `guest-sync`). */
  mode?: 'qmp' | 'qga';
  /** Default timeout for one command (ms). */
  timeoutMs?: number;
  /** Timeout for connecting + greeting/sync (ms). */
  connectTimeoutMs?: number;
}

interface Pending {
  id: string;
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * A QMP (QEMU Machine Protocol) client over a unix socket, also usable for the QEMU guest agent.
 * Newline-delimited JSON: the greeting, `qmp_capabilities`, commands with ids, asynchronous events
 * (emitted as `'event'`), per-command timeouts, and `'close'` when the socket ends (QEMU exited).
 *
 * @example
 * const qmp = await QmpClient.connect('/run/form-vm/abc/qmp.sock');
 * await qmp.execute('stop');
 * qmp.on('event', (e) => console.log(e.event));
 * qmp.close();
 */
export class QmpClient extends EventEmitter {
  readonly path: string;
  readonly mode: 'qmp' | 'qga';
  /** The greeting's QEMU version, e.g. `{ major: 7, minor: 2, micro: 22 }` (qmp mode). */
  version: { major: number; minor: number; micro: number } | undefined;
  private sock: Socket | undefined;
  private buf: Buffer = Buffer.alloc(0);
  private pending: Pending[] = [];
  private seq = 0;
  private closed = false;
  private readonly timeoutMs: number;
  private greetingWaiter: ((msg: Record<string, unknown>) => void) | undefined;
  private qgaSyncWaiter: { id: number; resolve: () => void } | undefined;

  private constructor(path: string, opts: QmpClientOptions) {
    super();
    this.path = path;
    this.mode = opts.mode ?? 'qmp';
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Connect, then negotiate capabilities (qmp) or resynchronize (qga). */
  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const c = new QmpClient(path, opts);
    await c.open(opts.connectTimeoutMs ?? 5_000);
    return c;
  }

  /** True until the socket closed. */
  get isOpen(): boolean {
    return !this.closed;
  }

  private open(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        fail(
          new FormError('TIMEOUT', `Cannot connect to ${this.label()} ${this.path}: no answer within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      let settled = false;
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.destroy(e);
        reject(e);
      };
      const ok = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve();
      };
      const sock = connect(this.path);
      this.sock = sock;
      sock.on('data', (d: Buffer) => this.onData(d));
      sock.on('error', (err: NodeJS.ErrnoException) => {
        const e = new FormError(
          'QMP_ERROR',
          `Cannot talk to ${this.label()} at ${this.path}: ${err.code ?? err.message}`,
          {
            cause: err,
          },
        );
        if (!settled) fail(e);
        else this.destroy(e);
      });
      sock.on('close', () =>
        this.destroy(new FormError('QMP_ERROR', `${this.label()} connection ${this.path} closed`)),
      );
      sock.on('connect', () => {
        if (this.mode === 'qmp') {
          this.greetingWaiter = (msg) => {
            const q = (msg.QMP as { version?: { qemu?: { major: number; minor: number; micro: number } } }) ?? {};
            this.version = q.version?.qemu;
            this.execute('qmp_capabilities', undefined, timeoutMs).then(ok, fail);
          };
        } else {
          // The agent may hold stale bytes from an earlier client: send guest-sync with a random id and
          // drop everything until its echo arrives.
          const id = Math.floor(Math.random() * 2 ** 31);
          this.qgaSyncWaiter = { id, resolve: ok };
          sock.write(
            Buffer.concat([
              Buffer.from([0xff]),
              Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`),
            ]),
          );
        }
      });
    });
  }

  private label(): string {
    return this.mode === 'qmp' ? 'QMP' : 'guest agent';
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl < 0) break;
      let raw = this.buf.subarray(0, nl);
      this.buf = this.buf.subarray(nl + 1);
      // guest-sync-delimited answers with a 0xFF sentinel before the JSON.
      const ff = raw.lastIndexOf(0xff);
      if (ff >= 0) raw = raw.subarray(ff + 1);
      const line = raw.toString('utf8').trim();
      if (line === '') continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // garbage (e.g. partial stale output from the agent)
      }
      // The guest agent's port is the tenant's: a line that is JSON but not an object (null, 8, "x")
      // must be dropped like garbage, never thrown out of the socket handler (that ends formationd).
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) continue;
      this.onMessage(msg);
    }
    // A peer that never ends its line (the guest agent is the tenant's) cannot grow our buffer forever.
    if (this.buf.length > MAX_LINE_BYTES) {
      this.buf = Buffer.alloc(0);
      this.destroy(new FormError('QMP_ERROR', `${this.label()} sent a line over ${MAX_LINE_BYTES} bytes: closed`));
    }
  }

  private onMessage(msg: Record<string, unknown>): void {
    if (this.greetingWaiter && 'QMP' in msg) {
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      w(msg);
      return;
    }
    if (this.qgaSyncWaiter) {
      if (msg.return === this.qgaSyncWaiter.id) {
        const w = this.qgaSyncWaiter;
        this.qgaSyncWaiter = undefined;
        w.resolve();
      }
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    if (!('return' in msg) && !('error' in msg)) return;
    let idx = 0;
    if (this.mode === 'qmp') {
      idx = this.pending.findIndex((p) => p.id === msg.id);
      if (idx < 0) return; // reply to a command that already timed out
    }
    const p = this.pending[idx];
    if (!p) return;
    this.pending.splice(idx, 1);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(
        new FormError('QMP_ERROR', `${this.label()} command ${p.command} failed: ${err.desc ?? 'unknown error'}`, {
          details: { class: err.class, command: p.command },
        }),
      );
    } else p.resolve(msg.return);
  }

  /**
   * Run one command and resolve with its `return` value. Rejects with QMP_ERROR (QEMU said no or the
   * socket closed) or TIMEOUT.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.timeoutMs): Promise<T> {
    if (this.closed || !this.sock) {
      return Promise.reject(new FormError('QMP_ERROR', `Cannot run ${command}: ${this.label()} connection is closed`));
    }
    const id = `form-${++this.seq}`;
    const msg: Record<string, unknown> = { execute: command };
    if (args !== undefined) msg.arguments = args;
    if (this.mode === 'qmp') msg.id = id;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.pending.findIndex((p) => p.id === id);
        if (i >= 0) this.pending.splice(i, 1);
        reject(new FormError('TIMEOUT', `${this.label()} command ${command} got no answer within ${timeoutMs} ms`));
        // An in-order protocol cannot match later replies any more once one is skipped.
        if (this.mode === 'qga') this.destroy(new FormError('TIMEOUT', 'guest agent timed out'));
      }, timeoutMs);
      this.pending.push({ id, command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.sock?.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Wait for the next event named `name` (optionally matching `pred`). */
  waitEvent(name: string, timeoutMs = this.timeoutMs, pred?: (e: QmpEvent) => boolean): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent): void => {
        if (e.event !== name || (pred && !pred(e))) return;
        cleanup();
        resolve(e);
      };
      const onClose = (): void => {
        cleanup();
        reject(new FormError('QMP_ERROR', `${this.label()} closed while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new FormError('TIMEOUT', `No ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  private destroy(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(
        reason instanceof FormError && reason.code === 'TIMEOUT'
          ? reason
          : new FormError('QMP_ERROR', `Cannot finish ${p.command}: ${reason.message}`),
      );
    }
    this.sock?.destroy();
    this.emit('close', reason);
  }

  /** Close the connection (pending commands are rejected). */
  close(): void {
    this.destroy(new FormError('QMP_ERROR', `${this.label()} connection closed by us`));
  }
}
