import { connect as netConnect, type Socket } from 'node:net';

/** What one upstream connection asks for. */
export interface DialOptions {
  /** Give up (and reject) after this long. */
  timeoutMs: number;
  /** Bind this source port (health probes use PROBE_SOURCE_PORTS); a taken one rejects with EADDRINUSE. */
  localPort?: number;
}

/**
 * How the ingress, its prober and its TCP mappings open a connection to a replica's formnet address.
 * Resolves with a connected socket (half-open allowed, not yet read from); rejects with an Error whose
 * `code` says why (ECONNREFUSED, ETIMEDOUT, EADDRINUSE...). The default dials from this process's own
 * network namespace; a node whose formnet lives in another namespace (`--netns`) injects one that opens
 * the connection there (packages/node/src/netns-dialer.ts), so nothing for formnet leaves by this
 * namespace's default route.
 */
export type Dialer = (address: string, port: number, opts: DialOptions) => Promise<Socket>;

/** Why a dial failed, as an Error with a `code`. */
export function dialError(code: string, message: string): NodeJS.ErrnoException {
  const e = new Error(message) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

/**
 * The dialer of this process's namespace: plain `net.connect`.
 *
 * @example const s = await directDialer('10.129.1.2', 8080, { timeoutMs: 3000 });
 */
export const directDialer: Dialer = (address, port, o) =>
  new Promise((resolve, reject) => {
    const s = netConnect({
      host: address,
      port,
      allowHalfOpen: true,
      ...(o.localPort !== undefined ? { localPort: o.localPort } : {}),
    });
    // Nothing is read before the caller takes it (a server that speaks first loses nothing).
    s.pause();
    const t = setTimeout(() => {
      s.destroy();
      reject(dialError('ETIMEDOUT', `connect timeout after ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      s.destroy();
      reject(err);
    });
  });
