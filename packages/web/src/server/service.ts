import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {} from '@fastify/swagger';
import type { KeyPair } from '@formation/identity';
import { type ApiServer, createApiServer, type Logger } from '@formation/service';
import { createWebContext } from './context.ts';
import { Metrics } from './metrics.ts';
import { registerBuildRoutes } from './routes/builds.ts';
import { registerFormpackRoutes } from './routes/formpacks.ts';
import { registerInstanceActionRoutes, registerInstanceRoutes } from './routes/instances.ts';
import { registerNetworkRoutes } from './routes/network.ts';
import { registerSessionRoutes } from './routes/session.ts';
import { registerStaticRoutes } from './routes/static.ts';
import { registerTelemetryRoutes } from './routes/telemetry.ts';
import { SessionStore } from './sessions.ts';
import { NodeApis, type NodeApiUrls } from './upstream.ts';

export { SESSION_COOKIE } from './context.ts';
/** Where `npm run build -w @formation/web` puts the front end. */
export const DEFAULT_STATIC_DIR = fileURLToPath(new URL('../../dist', import.meta.url));

export interface WebServiceOptions {
  /** Base URLs of this node's APIs (state, pack, vmm, formnet). */
  urls: NodeApiUrls;
  logger: Logger;
  /** The built front end (default: packages/web/dist). */
  staticDir?: string;
  /** How often the BFF samples node load for the Network plots (default 5 s; 0 = never). */
  sampleIntervalMs?: number;
  /** Samples kept per node (default 360: 30 min at 5 s). */
  maxSamples?: number;
  /** Lifetime of a `form web login` link (default 5 min) and of the session it opens (default 12 h). */
  tokenTtlMs?: number;
  sessionTtlMs?: number;
  /** Timeout of each node API call (default 5 s). */
  upstreamTimeoutMs?: number;
  /** Largest build-context upload from the browser (default 256 MiB). */
  maxUploadBytes?: number;
  /** The node's key: signs the VMM reads that only the node (or a VM's owner) may make. */
  nodeKey?: KeyPair;
}

export interface WebService {
  app: ApiServer;
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/**
 * The web dashboard: the built React app plus a small BFF under /api that reads the node APIs for the
 * signed-in developer. Sign-in: `form web login` signs POST /api/login/token with the developer key and
 * gets a one-time token; the browser trades it (POST /api/session) for an httpOnly session cookie bound
 * to that address. Unless the developer signs in with --read-only, `form web login` also signs a
 * delegation to a session key the server made for this login: with it the dashboard ships, starts,
 * stops, deletes, commits and builds for the developer (and nothing else) until the session ends. The
 * developer key itself never reaches the server. See README.md (trust model).
 */
export async function createWebService(opts: WebServiceOptions): Promise<WebService> {
  const app = await createApiServer({
    name: 'web',
    description: 'Formation web dashboard: static app + BFF for the signed-in developer',
    logger: opts.logger,
    bodyLimit: 64 * 1024,
  });
  const log = opts.logger.child({ component: 'web' });
  const apis = new NodeApis(opts.urls, opts.upstreamTimeoutMs ?? 5000, opts.nodeKey);
  const metrics = new Metrics(apis, opts.maxSamples ?? 360);
  const ctx = createWebContext({
    urls: opts.urls,
    apis,
    sessions: new SessionStore({ tokenTtlMs: opts.tokenTtlMs, sessionTtlMs: opts.sessionTtlMs }),
    log,
    metrics,
    maxUploadBytes: opts.maxUploadBytes ?? 256 * 2 ** 20,
    staticDir: resolve(opts.staticDir ?? DEFAULT_STATIC_DIR),
  });

  app.addHook('onSend', async (_req, reply) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });

  registerSessionRoutes(app, ctx);
  registerInstanceRoutes(app, ctx);
  registerTelemetryRoutes(app, ctx);
  registerFormpackRoutes(app, ctx);
  registerNetworkRoutes(app, ctx);
  registerInstanceActionRoutes(app, ctx);
  registerBuildRoutes(app, ctx);
  registerStaticRoutes(app, ctx);

  const interval = opts.sampleIntervalMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  if (interval > 0) {
    const tick = () => void metrics.sample().catch((err: unknown) => log.debug({ err }, 'metrics sample failed'));
    tick();
    timer = setInterval(tick, interval);
    timer.unref();
  }

  return {
    app,
    async close() {
      if (timer) clearInterval(timer);
      await app.close();
    },
  };
}
