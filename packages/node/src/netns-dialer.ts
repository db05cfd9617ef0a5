// How the ingress reaches formnet when formationd runs outside its node's namespace (`--netns` with
// formationd in the host's namespace): there a formnet address is not routed to the node's bridge and
// a connection would leave by the default route (a leak). One long-lived helper runs inside the
// namespace (`ip netns exec <ns> node -e …`, spawned with an IPC channel); for each dial it connects
// there and hands the connected socket's file descriptor back over the channel (SCM_RIGHTS, Node's
// handle passing). formationd then owns an ordinary TCP socket that lives in the node's namespace: no
// byte is copied by the helper, so a proxied connection costs the same as a direct one; a dial costs
// one IPC round trip. Used by the ingress's proxy (HTTP, TLS, TCP mappings) and its prober.
import { type ChildProcess, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { isIPv4, type Socket } from 'node:net';
import { type Dialer, dialError, directDialer } from '@formation/ingress';
import type { Logger } from '@formation/service';

/**
 * The helper (plain JS, run by `node -e` inside the namespace). A dial request `{ id, address, port,
 * localPort?, timeoutMs }` is answered `{ id, ok: true }` with the socket attached, or `{ id, code,
 * message }`. The socket is paused before it connects, so no byte is read before it is handed over (a
 * server that speaks first loses nothing). It exits when formationd goes (the channel closes).
 */
const HELPER = `'use strict';
const net = require('node:net');
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  let done = false;
  const answer = (msg, sock) => {
    if (done) return;
    done = true;
    clearTimeout(t);
    if (!process.connected) return sock && sock.destroy();
    process.send(msg, sock, (err) => { if (err && sock) sock.destroy(); });
  };
  const s = net.connect({ host: m.address, port: m.port, ...(m.localPort ? { localPort: m.localPort } : {}) });
  s.pause();
  const t = setTimeout(() => { s.destroy(); answer({ id: m.id, code: 'ETIMEDOUT', message: 'connect timeout after ' + m.timeoutMs + ' ms' }); }, m.timeoutMs);
  s.once('connect', () => answer({ id: m.id, ok: true }, s));
  s.once('error', (e) => { s.destroy(); answer({ id: m.id, code: e.code || 'ERROR', message: e.message }); });
});
process.send({ ready: true });`;

type Answer = { id: number; ok?: boolean; code?: string; message?: string; ready?: boolean };

export interface NetnsDialer {
  dial: Dialer;
  /** Whether dials go through a helper (false: formationd is already in that namespace). */
  helper: boolean;
  /** The helper's PID while it runs. */
  pid(): number | undefined;
  /** Stop the helper; pending dials fail with ECANCELED. */
  close(): void;
}

/**
 * Whether this process already runs in `netns` (the devnet's world mode runs formationd inside its
 * node's namespace): compares the namespace files' inodes.
 */
export function inNetns(netns: string): boolean {
  try {
    const mine = statSync('/proc/self/ns/net');
    const theirs = statSync(`/run/netns/${netns}`);
    return mine.dev === theirs.dev && mine.ino === theirs.ino;
  } catch {
    return false;
  }
}

/**
 * A dialer whose connections start inside `netns`: the plain one when this process is already there,
 * else one through a helper process in the namespace (started at the first dial, restarted after it
 * dies). Addresses must be IPv4 and ports integers (they come from signed state; checked again here).
 *
 * @example
 * const d = netnsDialer('fdr1', logger);
 * await startIngress({ ..., dial: d.dial }); // and netTransport({ dial: d.dial }) for the prober
 * d.close();
 */
export function netnsDialer(netns: string, logger?: Logger): NetnsDialer {
  if (inNetns(netns)) return { dial: directDialer, helper: false, pid: () => undefined, close() {} };
  const log = logger?.child({ component: 'netns-dialer', netns });
  let child: ChildProcess | undefined;
  let ready: Promise<ChildProcess> | undefined;
  let closed = false;
  let nextId = 1;
  const pending = new Map<number, { resolve(s: Socket): void; reject(e: Error): void; timer: NodeJS.Timeout }>();

  const failAll = (code: string, why: string) => {
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      pending.delete(id);
      p.reject(dialError(code, why));
    }
  };

  const start = (): Promise<ChildProcess> => {
    if (ready) return ready;
    ready = new Promise<ChildProcess>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', HELPER], {
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'json',
      });
      child = c;
      let stderr = '';
      c.stderr?.on('data', (d) => {
        stderr = (stderr + d).slice(-2000);
      });
      c.on('message', (m: Answer, handle?: unknown) => {
        if (m.ready) return resolve(c);
        const p = pending.get(m.id);
        const sock = handle as Socket | undefined;
        if (!p) {
          sock?.destroy(); // answered after its timeout: nobody wants it
          return;
        }
        pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok && sock) {
          sock.pause();
          // Like the plain dialer's sockets: each side's end is passed on, not answered with an end.
          sock.allowHalfOpen = true;
          p.resolve(sock);
        } else p.reject(dialError(m.code ?? 'ERROR', m.message ?? 'connect failed'));
      });
      c.once('error', (err) => reject(err));
      c.once('exit', (code, signal) => {
        if (child === c) {
          child = undefined;
          ready = undefined;
        }
        const why = `the dial helper in namespace ${netns} exited (${signal ?? code}) ${stderr.trim()}`.trim();
        if (!closed)
          log?.warn({ code, signal, stderr: stderr.trim() }, 'dial helper exited; restarted at the next dial');
        failAll('EHOSTUNREACH', why);
        reject(dialError('EHOSTUNREACH', why));
      });
    });
    ready.catch(() => {
      ready = undefined;
    });
    return ready;
  };

  const dial: Dialer = async (address, port, o) => {
    if (closed) throw dialError('ECANCELED', 'the dialer is closed');
    if (!isIPv4(address) || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw dialError('EINVAL', `not an IPv4 address and port: ${address}:${port}`);
    }
    const started = Date.now();
    const c = await start();
    const timeoutMs = Math.max(1, o.timeoutMs - (Date.now() - started));
    return new Promise<Socket>((resolve, reject) => {
      const id = nextId++;
      // The helper times out on its own; this one covers a helper that stopped answering.
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(dialError('ETIMEDOUT', `connect timeout after ${o.timeoutMs} ms`));
      }, timeoutMs + 500);
      pending.set(id, { resolve, reject, timer });
      const req = { id, address, port, timeoutMs, ...(o.localPort !== undefined ? { localPort: o.localPort } : {}) };
      c.send(req, (err) => {
        if (!err || !pending.has(id)) return;
        pending.delete(id);
        clearTimeout(timer);
        reject(dialError('EHOSTUNREACH', `the dial helper in namespace ${netns} is gone: ${err.message}`));
      });
    });
  };

  return {
    dial,
    helper: true,
    pid: () => child?.pid,
    close() {
      closed = true;
      failAll('ECANCELED', 'the dialer is closed');
      if (child?.pid) {
        child.disconnect?.();
        child.kill('SIGTERM');
      }
    },
  };
}
