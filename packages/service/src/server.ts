import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { NonceCache, randomHex, type Signer, verifyRequest } from '@formation/identity';
import { FormError, isFormError } from '@formation/interface';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest, LogController } from 'fastify';
import type { Logger } from './logger.ts';

/**
 * The schema of a response body a route sends as a stream, bytes or text it wrote itself (a file, a
 * proxied log), for `content` by media type: `binary` for bytes. Nothing is serialized through it.
 *
 * @example response: { 200: { content: { 'application/octet-stream': { schema: streamedBody('binary') } } } }
 */
export function streamedBody(format?: 'binary') {
  return Type.Unsafe<import('node:stream').Readable | Buffer | string>({
    type: 'string',
    ...(format ? { format } : {}),
  });
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Who this server is: the audience signed requests must name (see `setApiIdentity`). */
    formIdentity: { id: string };
  }
  interface FastifyRequest {
    /** The raw JSON body as received (what the signature covers). */
    rawBody?: string;
    /** The verified signer, set by `requireSigner`. */
    signer?: Signer;
  }
}

export type ApiServer = FastifyInstance<
  import('node:http').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface ApiServerOptions {
  /** Service name, used as the OpenAPI title and log component. */
  name: string;
  version?: string;
  description?: string;
  logger: Logger;
  /** Largest accepted body; uploads that stream bypass this via their own content-type parser. */
  bodyLimit?: number;
  /**
   * The audience signed requests must name: the node's public key when the service runs in a node.
   * Default: a random service identity for this process (`svc-…`). `setApiIdentity` changes it later.
   */
  identity?: string;
}

/** A fresh identity for a service that runs without a node key. */
export function newServiceIdentity(): string {
  return `svc-${randomHex(16)}`;
}

/** Make `id` (normally the node's public key) the audience this server's signed routes require. */
export function setApiIdentity(app: FastifyInstance, id: string): void {
  app.formIdentity.id = id;
}

/** The audience this server's signed routes require. */
export function apiIdentity(app: FastifyInstance): string {
  return app.formIdentity.id;
}

/**
 * A Fastify server with what every Formation API shares: JSON bodies kept raw for signature checks,
 * errors as `{ error: { code, message, hint? } }` with the FormError's status, an OpenAPI document at
 * `/openapi.json`, and `requireSigner` for mutating routes. Test routes with `app.inject()`.
 */
export async function createApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const app = Fastify({
    loggerInstance: opts.logger.child({ component: opts.name }) as FastifyBaseLogger,
    bodyLimit: opts.bodyLimit ?? 4 * 1024 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>();
  // An object, so that `setApiIdentity` on the root is seen by every encapsulated plugin context.
  app.decorate('formIdentity', { id: opts.identity ?? newServiceIdentity() });

  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    req.rawBody = text;
    if (text.trim() === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new FormError('BAD_REQUEST', 'Cannot parse request body: it is not valid JSON'), undefined);
    }
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: `Formation ${opts.name} API`,
        version: opts.version ?? '0.1.0',
        description: opts.description ?? '',
      },
      components: {
        securitySchemes: {
          formSignature: {
            type: 'apiKey',
            in: 'header',
            name: 'x-form-signature',
            description:
              'secp256k1 signature over FORM-SIG-V2\\nAUDIENCE\\nMETHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nsha256(body), with x-form-public-key, x-form-audience (GET /identity), x-form-timestamp and x-form-nonce headers.',
          },
        },
      },
    },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  app.get(
    '/identity',
    {
      schema: {
        summary: 'Who this server is: the audience (node public key or service identity) signed requests must name',
        response: { 200: Type.Object({ identity: Type.String() }) },
      },
    },
    async () => ({ identity: app.formIdentity.id }),
  );

  app.setErrorHandler((err, req, reply) => {
    if (isFormError(err)) {
      const fe = err as FormError;
      if (fe.status >= 500) req.log.error({ err: fe, code: fe.code }, fe.message);
      return reply.status(fe.status).send(fe.toJSON());
    }
    const e = err as Error & { validation?: unknown; statusCode?: number; code?: string };
    if (e.validation) {
      return reply.status(400).send({ error: { code: 'BAD_REQUEST', message: `Cannot accept request: ${e.message}` } });
    }
    if (e.statusCode && e.statusCode < 500) {
      const code = e.statusCode === 404 ? 'NOT_FOUND' : e.statusCode === 413 ? 'BAD_REQUEST' : 'BAD_REQUEST';
      return reply.status(e.statusCode).send({ error: { code, message: e.message } });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: `Internal error: ${e.message}` } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ error: { code: 'NOT_FOUND', message: `No route ${req.method} ${req.url}` } });
  });
  return app;
}

/**
 * Build a preHandler that verifies the request signature and sets `req.signer`. The request must be
 * signed for this server's identity (`GET /identity`; the node's public key in a node), so one signed
 * for another node is refused with AUTH_WRONG_AUDIENCE.
 * One NonceCache per server: a captured request cannot be replayed. `allowDelegation` lets a
 * dashboard session key signing under the developer's delegation act as the developer (routes that
 * manage Formpacks and instances only).
 */
export function requireSigner(nonces: NonceCache = new NonceCache(), opts: { allowDelegation?: boolean } = {}) {
  return async (req: FastifyRequest): Promise<void> => {
    const bodySha = req.headers['x-form-content-sha256'];
    req.signer = verifyRequest(
      req.headers,
      {
        method: req.method,
        path: req.url,
        body: req.rawBody ?? '',
        ...(typeof bodySha === 'string' && req.rawBody === undefined ? { bodySha256: bodySha } : {}),
      },
      { audience: req.server.formIdentity.id, nonces, allowDelegation: opts.allowDelegation ?? false },
    );
  };
}
