import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { MAX_HELLO_READ_BYTES, readClientHello } from './client-hello.ts';
import { type Dialer, directDialer } from './dialer.ts';
import { readHttpHead } from './http-head.ts';
import { type Backend, pickOrder, type RouteTable, type TcpRouteTable } from './routes.ts';

/** The ingress's limits; every one is a number a visitor can hit, and what happens then is tested. */
export interface IngressLimits {
  /** Largest HTTP request head read to find the Host (then 431). */
  maxHeadBytes: number;
  /** Time a visitor has to send the request head or the ClientHello (then 408 / close). */
  handshakeTimeoutMs: number;
  /** Time to connect to one replica before trying the next. */
  connectTimeoutMs: number;
  /** Replicas tried per connection (a connect failure is retried: nothing was sent upstream yet). */
  connectAttempts: number;
  /** A replica that refused a connection goes to the back of the line for this long. */
  downForMs: number;
  /** Open connections from one source address (then 429 / close). */
  maxConnectionsPerSource: number;
  /** Open connections in all (then 503 / close). */
  maxConnections: number;
  /** A proxied connection with no bytes either way for this long is closed. */
  idleTimeoutMs: number;
}

export const DEFAULT_INGRESS_LIMITS: IngressLimits = {
  maxHeadBytes: 16 * 1024,
  handshakeTimeoutMs: 10_000,
  connectTimeoutMs: 3_000,
  connectAttempts: 3,
  downForMs: 5_000,
  maxConnectionsPerSource: 64,
  maxConnections: 4096,
  idleTimeoutMs: 5 * 60_000,
};

export interface ListenAddress {
  host: string;
  port: number;
}

export interface IngressOptions {
  /** Where to listen: HTTP (Host routing; :80 on a node) and TLS passthrough (SNI routing; :443). */
  listen: { http?: ListenAddress; tls?: ListenAddress };
  /** The current route table (called per connection: keep it cheap, e.g. rebuilt on state changes). */
  routes(): RouteTable;
  logger: Logger;
  limits?: Partial<IngressLimits>;
  /**
   * Plain TCP mappings: listeners on `host` opened and closed by `Ingress.syncTcp`, each connection
   * forwarded to a backend of `routes().get(<its port>)`. The same limits apply (per source, in all).
   */
  tcp?: { host: string; routes(): TcpRouteTable };
  /**
   * How connections to replicas are opened (HTTP, TLS and TCP alike); default `directDialer` (this
   * process's namespace). A node whose formnet is in another namespace passes one that dials there.
   */
  dial?: Dialer;
  /**
   * TLS termination for routes marked `terminate` (`HTTPS <port> TERMINATE=ingress`): the certificate
   * for a host (undefined: none yet, the connection is closed), and the HTTP-01 answers this node
   * publishes while its ACME client asks for one (`GET /.well-known/acme-challenge/<token>` on :80 for
   * that host is answered here, not routed).
   */
  terminate?: {
    context(host: string): SecureContext | undefined;
    challenge(host: string, token: string): string | undefined;
    /**
     * Asked when a challenge for a terminated host is not this node's own and the request was not
     * itself relayed (header `X-Formation-Acme-Relay`): the other ingress nodes' answer, if one of
     * them holds the token (each node orders its own certificate, and the CA's check may reach any
     * node the name resolves to). Undefined: routed like any request.
     */
    relay?(host: string, token: string): Promise<string | undefined>;
  };
}

export type RefusalReason =
  | 'too-many-from-source'
  | 'too-many'
  | 'handshake-timeout'
  | 'bad-request'
  | 'head-too-large'
  | 'bad-client-hello'
  | 'unknown-host'
  | 'no-healthy-replica'
  | 'no-replica-reachable'
  | 'no-certificate'
  | 'tls-handshake-failed';

export interface IngressStats {
  open: number;
  proxied: number;
  /** Of `proxied`: connections whose TLS ended here (TERMINATE=ingress). */
  terminated: number;
  refused: Partial<Record<RefusalReason, number>>;
  /** Connect failures to replicas that were retried on another one (or exhausted the attempts). */
  connectFailures: number;
  /** Open proxied connections per replica id. */
  active: Record<string, number>;
}

export interface Ingress {
  /** The bound addresses (useful with port 0). */
  http?: AddressInfo;
  tls?: AddressInfo;
  stats(): IngressStats;
  /**
   * Listen on exactly these TCP ports (`tcp.host`), closing the others (their open connections end).
   * Returns the ports it could not open, with why (in use, no right).
   */
  syncTcp(ports: readonly number[]): Promise<Array<{ port: number; error: string }>>;
  /** TCP ports listened on now. */
  tcpPorts(): number[];
  /** Stop listening and close every connection. */
  close(): Promise<void>;
}

type Proto = 'http' | 'tls' | 'tcp';

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/**
 * Start the public ingress: HTTP routed by Host, TLS routed by the ClientHello's SNI and passed through
 * untouched (never decrypted; bytes are never logged), each to a replica of the route, spread by least
 * connections then round robin; a replica that refuses the connection is skipped for the next one.
 *
 * @example
 * const ingress = await startIngress({
 *   listen: { http: { host: '198.51.100.11', port: 80 }, tls: { host: '198.51.100.11', port: 443 } },
 *   routes: () => table, logger,
 * });
 * await ingress.close();
 */
export async function startIngress(opts: IngressOptions): Promise<Ingress> {
  const limits = checkLimits({ ...DEFAULT_INGRESS_LIMITS, ...opts.limits });
  const dial = opts.dial ?? directDialer;
  const log = opts.logger.child({ component: 'ingress' });
  const sockets = new Set<Socket>();
  const perSource = new Map<string, number>();
  const active = new Map<string, number>();
  const downUntil = new Map<string, number>();
  const turns = new Map<string, number>();
  const stats = {
    proxied: 0,
    terminated: 0,
    connectFailures: 0,
    refused: {} as Partial<Record<RefusalReason, number>>,
  };

  const refuse = (sock: Socket, proto: Proto, reason: RefusalReason, status: number, body: string, extra = {}) => {
    stats.refused[reason] = (stats.refused[reason] ?? 0) + 1;
    log.debug({ proto, reason, source: sock.remoteAddress, ...extra }, 'connection refused');
    // Read and drop what the visitor still sends, so the answer is not lost to a reset.
    sock.removeAllListeners('data');
    sock.on('data', () => {});
    sock.resume();
    if (proto === 'http' && sock.writable) {
      const text = `${body}\n`;
      sock.end(
        `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
          `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
      );
    } else sock.end();
    // A visitor that never closes its side does not hold the slot.
    setTimeout(() => sock.destroy(), 2_000).unref();
  };

  const onConnection = (proto: Proto) => (sock: Socket) => {
    const source = sock.remoteAddress ?? '?';
    sockets.add(sock);
    const n = (perSource.get(source) ?? 0) + 1;
    perSource.set(source, n);
    sock.once('close', () => {
      sockets.delete(sock);
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
    });
    sock.on('error', () => sock.destroy());
    if (sockets.size > limits.maxConnections) {
      return refuse(sock, proto, 'too-many', 503, 'This node has too many open connections; try again shortly.');
    }
    if (n > limits.maxConnectionsPerSource) {
      return refuse(sock, proto, 'too-many-from-source', 429, 'Too many open connections from your address.');
    }
    sock.setNoDelay(true);
    if (proto === 'tcp') {
      // Nothing to read first: the port is the route.
      const port = sock.localPort ?? 0;
      void route(sock, proto, String(port), Buffer.alloc(0)).catch((err) => {
        log.error({ err, port }, 'routing failed');
        sock.destroy();
      });
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      refuse(sock, proto, 'handshake-timeout', 408, 'The request did not arrive in time.');
    }, limits.handshakeTimeoutMs);
    timer.unref();
    sock.once('close', () => clearTimeout(timer));
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let host: string;
      if (proto === 'tls') {
        const r = readClientHello(buf);
        if (r.kind === 'more') {
          if (buf.length > MAX_HELLO_READ_BYTES) {
            clearTimeout(timer);
            refuse(sock, proto, 'bad-client-hello', 0, '', { why: 'ClientHello too large' });
          }
          return;
        }
        clearTimeout(timer);
        if (r.kind === 'refused') return refuse(sock, proto, 'bad-client-hello', 0, '', { why: r.reason });
        host = r.serverName;
      } else {
        const r = readHttpHead(buf, limits.maxHeadBytes);
        if (r.kind === 'more') return;
        clearTimeout(timer);
        if (r.kind === 'refused') {
          const reason = r.status === 431 ? 'head-too-large' : 'bad-request';
          return refuse(sock, proto, reason, r.status, `Bad request: ${r.reason}.`);
        }
        host = r.host;
        const token = acmeToken(buf);
        const answer = token && opts.terminate?.challenge(host, token);
        if (answer) {
          // This node's own ACME order for a TERMINATE=ingress instance: answered here, never routed.
          answerChallenge(sock, host, answer);
          return;
        }
        const relay = opts.terminate?.relay;
        if (token && relay && !RELAYED.test(buf.toString('latin1')) && terminated(host)) {
          // Another node's order: the CA's check reached this node, not the one that asked.
          sock.removeAllListeners('data');
          sock.pause();
          const head = buf;
          void relay(host, token)
            .catch(() => undefined)
            .then((got) => {
              if (sock.destroyed) return;
              if (got) return answerChallenge(sock, host, got);
              return route(sock, proto, host, head);
            })
            .catch((err) => {
              log.error({ err, host }, 'routing failed');
              sock.destroy();
            });
          return;
        }
      }
      sock.removeAllListeners('data');
      sock.pause();
      void route(sock, proto, host, buf).catch((err) => {
        log.error({ err, host }, 'routing failed');
        sock.destroy();
      });
    };
    sock.on('data', (chunk: Buffer) => {
      try {
        onData(chunk);
      } catch (err) {
        // The readers are pure and fuzzed; should one still throw, one connection ends, not the process.
        log.error({ err, proto }, 'ingress reader failed');
        sock.destroy();
      }
    });
  };

  const answerChallenge = (sock: Socket, host: string, answer: string) => {
    sock.removeAllListeners('data');
    sock.on('data', () => {});
    sock.resume();
    log.debug({ host }, 'ACME HTTP-01 challenge answered');
    sock.end(
      `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${Buffer.byteLength(answer)}\r\nConnection: close\r\n\r\n${answer}`,
    );
  };
  const terminated = (host: string): boolean => {
    try {
      return opts.routes().get(host)?.terminate === true;
    } catch {
      return false;
    }
  };

  const route = async (sock: Socket, proto: Proto, host: string, first: Buffer) => {
    let r: ReturnType<RouteTable['get']>;
    try {
      r = proto === 'tcp' ? opts.tcp?.routes().get(Number(host)) : opts.routes().get(host);
    } catch (err) {
      // A broken route source must not take the node down (this runs outside any caller's try).
      log.error({ err, host }, 'the route table could not be read');
      return refuse(sock, proto, 'no-healthy-replica', 503, `${host} cannot be routed right now.`, { host });
    }
    if (!r) return refuse(sock, proto, 'unknown-host', 404, `No instance is served at ${host} here.`, { host });
    if (proto === 'tls' && r.terminate) return terminateTls(sock, host, first, r.backends);
    const port = (b: Backend) => (proto === 'http' ? b.httpPort : proto === 'tls' ? b.tlsPort : (b.tcpPort ?? null));
    const candidates = r.backends.filter((b) => port(b) !== null);
    if (candidates.length === 0) {
      return refuse(sock, proto, 'no-healthy-replica', 503, `${host} has no healthy replica right now.`, { host });
    }
    const got = await connectAny(sock, proto, host, candidates, (b) => port(b)!);
    if (got === 'gone') return;
    if (got) return pipe(sock, got.up, got.b, proto, host, first);
    return refuse(sock, proto, 'no-replica-reachable', 502, `No replica of ${host} could be reached.`, { host });
  };

  /** Connect to the first of `candidates` that answers (spread and retry as in the README); 'gone' when the visitor left. */
  const connectAny = async (
    client: Socket,
    proto: Proto,
    host: string,
    candidates: readonly Backend[],
    port: (b: Backend) => number,
  ): Promise<{ b: Backend; up: Socket } | undefined | 'gone'> => {
    const now = Date.now();
    const down = new Set([...downUntil].filter(([, t]) => t > now).map(([id]) => id));
    const turn = turns.get(`${proto}/${host}`) ?? 0;
    turns.set(`${proto}/${host}`, turn + 1);
    const order = pickOrder(candidates, active, turn, down).slice(0, limits.connectAttempts);
    for (const b of order) {
      if (client.destroyed) return 'gone';
      const up = await dial(b.address, port(b), { timeoutMs: limits.connectTimeoutMs }).catch(
        (err: NodeJS.ErrnoException) =>
          new Error(err.code === 'ETIMEDOUT' ? err.message : `connect ${err.code ?? err.message}`),
      );
      if (!(up instanceof Error)) {
        downUntil.delete(b.id);
        return { b, up };
      }
      stats.connectFailures++;
      downUntil.set(b.id, Date.now() + limits.downForMs);
      log.info({ proto, host, replica: b.id, error: up.message }, 'replica refused a connection; trying the next');
    }
    return undefined;
  };

  /**
   * TERMINATE=ingress: end the visitor's TLS here with the host's certificate (the ClientHello already
   * read is replayed into the TLS server), then send the plain stream to a replica's HTTP port.
   */
  const terminateTls = (sock: Socket, host: string, first: Buffer, backends: readonly Backend[]) => {
    const context = opts.terminate?.context(host);
    if (!context) return refuse(sock, 'tls', 'no-certificate', 0, '', { host });
    const candidates = backends.filter((b) => b.httpPort !== null);
    const tlsSock = new TLSSocket(replayed(sock, first), {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => {
      stats.refused['tls-handshake-failed'] = (stats.refused['tls-handshake-failed'] ?? 0) + 1;
      tlsSock.destroy();
    }, limits.handshakeTimeoutMs);
    timer.unref();
    tlsSock.on('error', (err) => {
      if (!tlsSock.listenerCount('secure')) return tlsSock.destroy();
      clearTimeout(timer);
      stats.refused['tls-handshake-failed'] = (stats.refused['tls-handshake-failed'] ?? 0) + 1;
      log.debug({ host, error: err.message, source: sock.remoteAddress }, 'TLS handshake failed');
      tlsSock.destroy();
    });
    tlsSock.once('close', () => sock.destroy());
    tlsSock.pause();
    tlsSock.once('secure', () => {
      clearTimeout(timer);
      tlsSock.removeAllListeners('secure');
      const answer = (status: number, reason: RefusalReason, text: string) => {
        stats.refused[reason] = (stats.refused[reason] ?? 0) + 1;
        const body = `${text}\n`;
        tlsSock.end(
          `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        setTimeout(() => tlsSock.destroy(), 2_000).unref();
      };
      if (candidates.length === 0)
        return answer(503, 'no-healthy-replica', `${host} has no healthy replica right now.`);
      void connectAny(sock, 'tls', host, candidates, (b) => b.httpPort!).then(
        (got) => {
          if (got === 'gone') return;
          if (!got) return answer(502, 'no-replica-reachable', `No replica of ${host} could be reached.`);
          stats.terminated++;
          pipe(tlsSock, got.up, got.b, 'tls', host, Buffer.alloc(0));
        },
        (err) => {
          log.error({ err, host }, 'routing failed');
          tlsSock.destroy();
        },
      );
    });
  };

  const pipe = (client: Socket, up: Socket, b: Backend, proto: Proto, host: string, first: Buffer) => {
    if (client.destroyed) {
      up.destroy();
      return;
    }
    stats.proxied++;
    active.set(b.id, (active.get(b.id) ?? 0) + 1);
    sockets.add(up);
    log.debug({ proto, host, replica: b.id, source: client.remoteAddress }, 'proxying');
    up.setNoDelay(true);
    up.write(first);
    client.pipe(up);
    up.pipe(client);
    client.resume();
    const kill = () => {
      client.destroy();
      up.destroy();
    };
    client.setTimeout(limits.idleTimeoutMs, kill);
    up.setTimeout(limits.idleTimeoutMs, kill);
    up.on('error', kill);
    client.on('error', kill);
    up.once('close', () => {
      sockets.delete(up);
      const left = (active.get(b.id) ?? 1) - 1;
      if (left <= 0) active.delete(b.id);
      else active.set(b.id, left);
    });
    // When one side is fully closed, the other has been ended by the pipe; do not hold it open for long.
    const linger = (other: Socket) => () => setTimeout(() => other.destroy(), 5_000).unref();
    up.once('close', linger(client));
    client.once('close', linger(up));
  };

  const servers: Array<{ proto: Proto; server: Server; at: ListenAddress }> = [];
  const tcpServers = new Map<number, Server>();
  const result: Ingress = {
    stats: () => ({
      open: sockets.size,
      proxied: stats.proxied,
      terminated: stats.terminated,
      refused: { ...stats.refused },
      connectFailures: stats.connectFailures,
      active: Object.fromEntries(active),
    }),
    async syncTcp(ports) {
      const want = new Set(ports);
      for (const [p, server] of tcpServers) {
        if (want.has(p)) continue;
        tcpServers.delete(p);
        server.close();
        for (const s of sockets) if (s.localPort === p && s.localAddress === opts.tcp?.host) s.destroy();
        log.info({ port: p }, 'TCP mapping closed');
      }
      const failed: Array<{ port: number; error: string }> = [];
      if (!opts.tcp) return [...want].map((port) => ({ port, error: 'no tcp host configured' }));
      for (const p of want) {
        if (tcpServers.has(p)) continue;
        const server = createServer({ allowHalfOpen: true }, onConnection('tcp'));
        try {
          await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen({ host: opts.tcp!.host, port: p }, () => {
              server.off('error', reject);
              resolve();
            });
          });
          server.on('error', (err) => log.error({ err, port: p }, 'TCP mapping listener error'));
          tcpServers.set(p, server);
          log.info({ host: opts.tcp.host, port: p }, 'TCP mapping listening');
        } catch (err) {
          server.close();
          failed.push({ port: p, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message });
        }
      }
      return failed;
    },
    tcpPorts: () => [...tcpServers.keys()].sort((a, b) => a - b),
    async close() {
      for (const s of tcpServers.values()) s.close();
      tcpServers.clear();
      await Promise.all(
        servers.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve()))),
      ).finally(() => {
        for (const s of sockets) s.destroy();
      });
    },
  };
  const want = (['http', 'tls'] as const).filter((p) => opts.listen[p]);
  if (want.length === 0 && !opts.tcp) {
    throw new FormError('CONFIG_INVALID', 'Cannot start the ingress: no listen address (http or tls)', {
      hint: 'Pass listen: { http: { host, port }, tls: { host, port } }.',
    });
  }
  try {
    for (const proto of want) {
      const at = opts.listen[proto]!;
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, onConnection(proto));
      servers.push({ proto, server, at });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: at.host, port: at.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => log.error({ err, proto }, 'ingress listener error'));
      result[proto] = server.address() as AddressInfo;
    }
  } catch (err) {
    for (const { server } of servers) server.close();
    const e = err as NodeJS.ErrnoException;
    const at = servers.at(-1)?.at;
    throw new FormError('UNAVAILABLE', `Cannot start the ingress on ${at?.host}:${at?.port}: ${e.code ?? e.message}`, {
      hint:
        e.code === 'EADDRINUSE'
          ? 'Another program listens there; stop it or choose other ingress ports.'
          : e.code === 'EACCES'
            ? 'Ports below 1024 need root or CAP_NET_BIND_SERVICE.'
            : 'Check that the address is configured on this host.',
      cause: err,
    });
  }
  log.info({ http: result.http, tls: result.tls, limits }, 'ingress listening');
  return result;
}

/** The header a relayed challenge request carries: such a request is never relayed again. */
export const ACME_RELAY_HEADER = 'x-formation-acme-relay';
const RELAYED = new RegExp(`\\n${ACME_RELAY_HEADER}:`, 'i');

/** The token of a `GET /.well-known/acme-challenge/<token>` request line, else undefined. */
function acmeToken(head: Buffer): string | undefined {
  const eol = head.indexOf('\n');
  const line = head.subarray(0, eol === -1 ? head.length : eol).toString('latin1');
  return /^GET \/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,128}) HTTP\/1\.[01]\r?$/.exec(line)?.[1];
}

/**
 * The visitor's socket as a stream that first yields `first` (the ClientHello already read for SNI),
 * then whatever the socket brings: what a TLS server reads from. Writes and ends go to the socket.
 */
function replayed(sock: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read() {
      sock.resume();
    },
    write(chunk, _enc, cb) {
      sock.write(chunk, cb);
    },
    final(cb) {
      sock.end();
      cb();
    },
    destroy(err, cb) {
      sock.destroy();
      cb(err);
    },
  });
  if (first.length > 0) d.push(first);
  sock.on('data', (c: Buffer) => {
    if (!d.push(c)) sock.pause();
  });
  sock.once('end', () => d.push(null));
  sock.once('close', () => d.destroy());
  return d;
}

function checkLimits(l: IngressLimits): IngressLimits {
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isInteger(v) || v < 1) {
      throw new FormError(
        'CONFIG_INVALID',
        `Cannot start the ingress: limit ${k} must be a positive integer, got ${v}`,
        {
          hint: `Omit ${k} to use ${DEFAULT_INGRESS_LIMITS[k as keyof IngressLimits]}.`,
        },
      );
    }
  }
  return l;
}
