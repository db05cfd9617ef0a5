import type { Socket } from 'node:net';
import { type HealthcheckSpec, PROBE_SOURCE_PORTS } from '@formation/interface';
import type { Logger } from '@formation/service';
import { type Dialer, directDialer } from './dialer.ts';
import { type CheckResult, type HealthState, type HealthStatus, INITIAL_HEALTH, nextHealth } from './health.ts';

/** How a check reaches a replica. `netTransport()` is the real one (sockets); tests may pass another. */
export interface ProbeTransport {
  /** GET `path` at address:port; ok when the status is 200-399. Must settle within `timeoutMs`. */
  http(address: string, port: number, path: string, timeoutMs: number): Promise<{ ok: boolean; detail?: string }>;
  /** Open (and close) a TCP connection to address:port within `timeoutMs`. */
  tcp(address: string, port: number, timeoutMs: number): Promise<{ ok: boolean; detail?: string }>;
}

/** Runs a CMD check inside the guest (the guest agent); the node wires it when it can. */
export type CommandRunner = (
  replicaId: string,
  command: { form: 'exec'; argv: string[] } | { form: 'shell'; command: string },
  timeoutMs: number,
) => Promise<{ ok: boolean; detail?: string }>;

/** Time, injectable so tests drive it. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** One replica to check. */
export interface ProbeTarget {
  replicaId: string;
  address: string;
  /** When the replica booted (the prober's clock): the start period counts from here. */
  startedAt: number;
  spec: HealthcheckSpec;
}

/** What the prober knows about a replica: status plus the last results (bounded), for `form manage get status`. */
export interface HealthReport {
  status: HealthStatus;
  failures: number;
  last: CheckResult[];
}

export interface Prober {
  /** Reconcile the set of replicas to check: new ones start, gone ones stop, changed ones restart. */
  set(targets: readonly ProbeTarget[]): void;
  /** A replica's status, or undefined when it is not checked here. */
  status(replicaId: string): HealthStatus | undefined;
  report(replicaId: string): HealthReport | undefined;
  close(): void;
}

export interface ProberOptions {
  transport?: ProbeTransport;
  clock?: Clock;
  /** Without it, CMD checks are not run and their replicas are not checked here (status undefined). */
  runCommand?: CommandRunner;
  logger?: Logger;
  /** Called when a replica's status changes. */
  onChange?: (replicaId: string, status: HealthStatus, previous: HealthStatus) => void;
}

/** Results kept per replica for reports. */
const KEEP_RESULTS = 8;

interface Entry {
  target: ProbeTarget;
  key: string;
  state: HealthState;
  last: CheckResult[];
  timer: unknown;
  stopped: boolean;
}

/**
 * Runs each target's HEALTHCHECK every `intervalMs` (the first at once), folds the results with
 * `nextHealth`, and answers `status()` for the route table. One check at a time per replica; a check
 * that outlives its timeout counts as a failure.
 *
 * @example
 * const prober = createProber({ logger });
 * prober.set([{ replicaId, address: '10.129.1.2', startedAt: Date.now(), spec: manifest.formfile.healthcheck }]);
 * prober.status(replicaId) // 'starting' → 'healthy'
 */
export function createProber(opts: ProberOptions = {}): Prober {
  const transport = opts.transport ?? netTransport();
  const clock = opts.clock ?? systemClock;
  const entries = new Map<string, Entry>();
  const log = opts.logger?.child({ component: 'health' });

  const runOne = async (e: Entry): Promise<CheckResult> => {
    const { address, spec, replicaId } = e.target;
    const at = clock.now();
    const t = spec.test;
    let timer: unknown;
    const timeout = new Promise<{ ok: boolean; detail: string }>((resolve) => {
      timer = clock.setTimeout(
        () => resolve({ ok: false, detail: `timeout after ${spec.timeoutMs} ms` }),
        spec.timeoutMs,
      );
    });
    const check =
      t.type === 'http'
        ? transport.http(address, t.port, t.path, spec.timeoutMs)
        : t.type === 'tcp'
          ? transport.tcp(address, t.port, spec.timeoutMs)
          : opts.runCommand!(replicaId, t.command, spec.timeoutMs);
    try {
      const r = await Promise.race([
        check.catch((err) => ({ ok: false, detail: String(err?.message ?? err) })),
        timeout,
      ]);
      return { at, ok: r.ok, ...(r.detail ? { detail: r.detail } : {}) };
    } finally {
      clock.clearTimeout(timer);
    }
  };

  const schedule = (e: Entry, delay: number) => {
    e.timer = clock.setTimeout(() => {
      void tick(e);
    }, delay);
  };

  const tick = async (e: Entry) => {
    if (e.stopped) return;
    const started = clock.now();
    const result = await runOne(e);
    if (e.stopped) return;
    const before = e.state.status;
    e.state = nextHealth(e.state, result, e.target.spec, e.target.startedAt);
    e.last = [...e.last.slice(-(KEEP_RESULTS - 1)), result];
    if (e.state.status !== before) {
      log?.info(
        { replica: e.target.replicaId, status: e.state.status, was: before, detail: result.detail },
        'replica health changed',
      );
      opts.onChange?.(e.target.replicaId, e.state.status, before);
    }
    schedule(e, Math.max(0, e.target.spec.intervalMs - (clock.now() - started)));
  };

  const stop = (e: Entry) => {
    e.stopped = true;
    clock.clearTimeout(e.timer);
  };

  return {
    set(targets) {
      const wanted = new Map<string, ProbeTarget>();
      for (const t of targets) {
        if (t.spec.test.type === 'cmd' && !opts.runCommand) continue;
        wanted.set(t.replicaId, t);
      }
      for (const [id, e] of entries) {
        const t = wanted.get(id);
        if (!t || keyOf(t) !== e.key) {
          stop(e);
          entries.delete(id);
        }
      }
      for (const [id, t] of wanted) {
        if (entries.has(id)) continue;
        const e: Entry = {
          target: t,
          key: keyOf(t),
          state: INITIAL_HEALTH,
          last: [],
          timer: undefined,
          stopped: false,
        };
        entries.set(id, e);
        schedule(e, 0);
      }
    },
    status: (id) => entries.get(id)?.state.status,
    report(id) {
      const e = entries.get(id);
      return e && { status: e.state.status, failures: e.state.failures, last: [...e.last] };
    },
    close() {
      for (const e of entries.values()) stop(e);
      entries.clear();
    },
  };
}

function keyOf(t: ProbeTarget): string {
  return JSON.stringify([t.address, t.startedAt, t.spec]);
}

/** Most bytes of a health response read: the status line is all that counts. */
const MAX_STATUS_LINE = 1024;

/** Source ports tried per probe before giving up (a taken one tries the next). */
const BIND_TRIES = 8;

/**
 * The real transport: plain sockets. HTTP writes one `GET <path> HTTP/1.1` with `Connection: close` and
 * reads only the status line (never more than 1 KiB, never a body). Every connection binds a source port
 * in `PROBE_SOURCE_PORTS`, which is how the replica's node tells a probe from a visit (scale to zero:
 * probes keep no replica awake and wake no suspended one); a port in use tries another. Each closed
 * probe leaves its port in TIME_WAIT for a minute: the range allows ~900 probes a minute per node.
 * `dial` opens the connections (default: this process's namespace; a node with `--netns` dials there).
 */
export function netTransport(o: { sourcePorts?: { first: number; last: number }; dial?: Dialer } = {}): ProbeTransport {
  const range = o.sourcePorts ?? PROBE_SOURCE_PORTS;
  const dial = o.dial ?? directDialer;
  const attempt = async (address: string, port: number, timeoutMs: number, localPort: number): Promise<Socket> => {
    const s = await dial(address, port, { timeoutMs, localPort });
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    return s;
  };
  const size = range.last - range.first + 1;
  const open = async (address: string, port: number, timeoutMs: number): Promise<Socket> => {
    // From a random port of the range, the next ones in turn (wrapping) while they are taken.
    const start = Math.floor(Math.random() * size);
    for (let i = 0; ; i++) {
      const localPort = range.first + ((start + i) % size);
      try {
        return await attempt(address, port, timeoutMs, localPort);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i + 1 >= Math.min(BIND_TRIES, size)) throw err;
      }
    }
  };
  return {
    async tcp(address, port, timeoutMs) {
      try {
        const s = await open(address, port, timeoutMs);
        s.destroy();
        return { ok: true };
      } catch (err) {
        return { ok: false, detail: `connect ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
    },
    async http(address, port, path, timeoutMs) {
      // The Formfile parser and the manifest schema allow only URI characters; a request line stays one line.
      if (!/^\/[\x21-\x7e]*$/.test(path)) return { ok: false, detail: 'a health check path that is not a URI path' };
      let s: Socket;
      try {
        s = await open(address, port, timeoutMs);
      } catch (err) {
        return { ok: false, detail: `connect ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
      }
      return new Promise((resolve) => {
        let got = Buffer.alloc(0);
        const done = (r: { ok: boolean; detail?: string }) => {
          s.destroy();
          resolve(r);
        };
        s.on('data', (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          const eol = got.indexOf('\r\n');
          if (eol === -1) {
            if (got.length > MAX_STATUS_LINE) done({ ok: false, detail: 'no HTTP status line' });
            return;
          }
          const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(got.subarray(0, eol).toString('latin1'));
          if (!m) return done({ ok: false, detail: 'no HTTP status line' });
          const code = Number(m[1]);
          done(code >= 200 && code < 400 ? { ok: true } : { ok: false, detail: `status ${code}` });
        });
        s.on('error', (err) => done({ ok: false, detail: err.message }));
        s.on('close', () => done({ ok: false, detail: 'closed before a status line' }));
        s.resume();
        const host = address.includes(':') ? `[${address}]` : address;
        s.write(
          `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: formation-health/1\r\nConnection: close\r\n\r\n`,
        );
      });
    },
  };
}
