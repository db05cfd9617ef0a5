import { createServer, type Server } from 'node:https';
import { FormError } from '@formation/interface';
import type { FastifyInstance } from 'fastify';

export interface TlsListener {
  server: Server;
  /** Where it listens (`host:port`). */
  address: string;
  close(): Promise<void>;
}

/**
 * Serve an existing Fastify app over TLS on another address too (the app keeps its own plain
 * listener, e.g. on loopback for the local operator). Requests go through `app.routing`, so routes,
 * hooks, signature checks and error bodies are the app's own; 'upgrade' events (websockets) are
 * forwarded to the app's server. `key`/`cert` are PEM (`loadOrCreateTlsIdentity`).
 *
 * @example
 * const pub = await listenTls(app, { host: '198.51.100.11', port: 3004, key: tls.key, cert: tls.cert });
 * // … later
 * await pub.close();
 */
export async function listenTls(
  app: FastifyInstance,
  opts: { host: string; port: number; key: string; cert: string; name?: string },
): Promise<TlsListener> {
  await app.ready();
  const server = createServer({ key: opts.key, cert: opts.cert, minVersion: 'TLSv1.2' }, (req, res) =>
    app.routing(req, res),
  );
  server.on('upgrade', (req, socket, head) => {
    if (app.server.listenerCount('upgrade') > 0) app.server.emit('upgrade', req, socket, head);
    else socket.destroy();
  });
  // A client that fails the handshake (e.g. one that refuses our certificate) is not our error.
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  const where = `${opts.host}:${opts.port}`;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'the port is in use'
          : err.code === 'EADDRNOTAVAIL'
            ? 'that address is not on this host (or in this namespace)'
            : err.message;
      reject(
        new FormError('UNAVAILABLE', `Cannot start the ${opts.name ?? 'TLS'} API on ${where}: ${why}`, {
          hint:
            err.code === 'EADDRNOTAVAIL'
              ? 'Give --public-address an address of one of this host’s interfaces (`ip -br addr`).'
              : 'Is another node running (`form node status`)? Or use --port-offset.',
        }),
      );
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
  return {
    server,
    address: where,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
