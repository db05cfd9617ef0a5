import { Readable } from 'node:stream';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { BuildStarted } from '@formation/interface/web-api';
import { PackClient } from '@formation/pack';
import type { ApiServer } from '@formation/service';
import { Type } from '@sinclair/typebox';
import type { WebContext } from '../context.ts';
import { BuildLogResponse, BuildStartedSchema } from '../schemas.ts';

/** Builds from an uploaded build context, and their live log. */
export function registerBuildRoutes(app: ApiServer, ctx: WebContext): void {
  const { urls, log } = ctx;
  const maxUpload = ctx.maxUploadBytes;
  for (const type of ['application/x-tar', 'application/gzip']) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: maxUpload }, (_req, body, done) => done(null, body));
  }
  app.post(
    '/api/builds',
    {
      bodyLimit: maxUpload,
      schema: {
        summary: 'Build a Formpack from an uploaded build context (tar or tar.gz holding the Formfile)',
        querystring: Type.Object({
          formfile: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/]+$' })),
        }),
        response: { 202: BuildStartedSchema, 400: ErrorBodySchema, 401: ErrorBodySchema, 403: ErrorBodySchema },
      },
    },
    async (req, reply): Promise<BuildStarted> => {
      const { s, key } = ctx.manager(req);
      const type = String(req.headers['content-type'] ?? '')
        .split(';')[0]
        ?.trim();
      const body = req.body;
      if (!(body instanceof Buffer) || (type !== 'application/x-tar' && type !== 'application/gzip')) {
        throw new FormError('PACK_BAD_ARCHIVE', 'Cannot build: send the build context as a tar or tar.gz archive', {
          hint: 'Pick the directory holding your Formfile, or a .tar / .tar.gz of it.',
        });
      }
      const pack = new PackClient(urls.pack, key);
      const contextId = await pack.uploadArchive(body, type);
      const b = await pack.buildContext(contextId, req.query.formfile ?? 'Formfile');
      log.info({ address: s.address, build: b.buildId, formpack: b.id, bytes: body.length }, 'dashboard: build');
      reply.status(202);
      return { buildId: b.buildId, id: b.id, name: b.name, status: b.status, cached: b.cached };
    },
  );

  app.get(
    '/api/builds/:buildId/log',
    {
      schema: {
        summary: 'Follow one of your builds: NDJSON lines (step, log, end) as they happen',
        params: Type.Object({ buildId: Type.String({ pattern: '^[0-9a-f]{16}$' }) }),
        response: { 200: BuildLogResponse, 401: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req, reply) => {
      const s = ctx.session(req);
      const pack = new PackClient(urls.pack);
      const info = await pack.status(req.params.buildId);
      if (info.owner !== s.address) {
        throw new FormError('NOT_FOUND', `You have no build ${req.params.buildId}`);
      }
      const res = await fetch(`${urls.pack.replace(/\/+$/, '')}/builds/${req.params.buildId}/log`);
      if (!res.ok || !res.body) throw new FormError('UNAVAILABLE', `Cannot follow build ${req.params.buildId}`);
      reply.header('x-accel-buffering', 'no');
      return reply
        .type('application/x-ndjson')
        .send(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream));
    },
  );
}
