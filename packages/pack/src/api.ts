import { createReadStream, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { NonceCache, type Signer } from '@formation/identity';
import { FormError, type FormpackManifest } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, createApiServer, type Logger, requireSigner, streamedBody } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { BuildInfoSchema, IdParams, ManifestSchema } from './api-schemas.ts';
import { DEFAULT_ARCHIVE_LIMITS } from './archive.ts';
import { BuildJobs } from './build-jobs.ts';
import { startBuild } from './build-start.ts';
import { ARTIFACT_FILES, type ArtifactName, Builder } from './builder.ts';
import { DEFAULT_PACK_CACHE } from './config.ts';
import { ContextStore, DEFAULT_CONTEXT_STORE } from './context-store.ts';
import { findFormpack, publicManifest } from './formpack-lookup.ts';
import { BuildQueue, DEFAULT_BUILD_QUEUE } from './queue.ts';

export interface PackServiceOptions {
  dataDir: string;
  /** Default DEFAULT_PACK_CACHE (/var/tmp/formation-pack-cache). */
  cacheDir?: string;
  logger: Logger;
  suite?: string;
  mirror?: string;
  kernel?: string;
  maxUploadBytes?: number;
  maxContextBytes?: number;
  maxConcurrentBuilds?: number;
  /** Builds waiting on the node (default 64) and per owner (default 8); more are refused with PACK_QUEUE_FULL. */
  maxQueuedBuilds?: number;
  maxQueuedPerOwner?: number;
  /** Uploaded contexts one signer may hold before building them (default 4; each may be maxContextBytes). */
  maxContextsPerOwner?: number;
  /** Longest a build / one RUN step may take (Builder options; default 10 min). */
  buildTimeoutMs?: number;
  runTimeoutMs?: number;
  /** Use this builder instead of creating one. */
  builder?: Builder;
  /**
   * Who besides a Formpack's owner may download it (artifacts, full manifest): the daemon answers
   * true for a signer that is an admitted node (a node key in state). `owner` is the manifest's.
   * Default: owners only.
   */
  authorizeFetch?: (signer: Signer, formpackId: string, owner: string) => boolean | Promise<boolean>;
}

/**
 * The pack service: Fastify app (OpenAPI at /openapi.json) over a Builder.
 *
 * @example
 * const { app, builder, close } = await createPackService({ dataDir, logger });
 * await app.listen({ host: '127.0.0.1', port: 3003 });
 */
export async function createPackService(
  opts: PackServiceOptions,
): Promise<{ app: ApiServer; builder: Builder; close: () => Promise<void> }> {
  const log = opts.logger.child({ component: 'pack' });
  const builder =
    opts.builder ??
    new Builder({
      dataDir: opts.dataDir,
      cacheDir: opts.cacheDir ?? DEFAULT_PACK_CACHE,
      ...(opts.suite ? { suite: opts.suite } : {}),
      ...(opts.mirror ? { mirror: opts.mirror } : {}),
      ...(opts.kernel ? { kernel: opts.kernel } : {}),
      ...(opts.buildTimeoutMs ? { buildTimeoutMs: opts.buildTimeoutMs } : {}),
      ...(opts.runTimeoutMs ? { runTimeoutMs: opts.runTimeoutMs } : {}),
      logger: opts.logger,
    });
  const contexts = new ContextStore({
    dir: join(opts.dataDir, 'pack-contexts'),
    ...(opts.maxUploadBytes !== undefined ? { maxUploadBytes: opts.maxUploadBytes } : {}),
    limits: { ...DEFAULT_ARCHIVE_LIMITS, maxBytes: opts.maxContextBytes ?? DEFAULT_ARCHIVE_LIMITS.maxBytes },
    ...(opts.maxContextsPerOwner !== undefined ? { maxPerOwner: opts.maxContextsPerOwner } : {}),
  });
  // Finished builds stay readable (status, log) as long as an unbuilt context is kept.
  const jobs = new BuildJobs({ keepMs: DEFAULT_CONTEXT_STORE.ttlMs });
  const queue = new BuildQueue({
    slots: opts.maxConcurrentBuilds ?? DEFAULT_BUILD_QUEUE.slots,
    maxQueued: opts.maxQueuedBuilds ?? DEFAULT_BUILD_QUEUE.maxQueued,
    maxQueuedPerOwner: opts.maxQueuedPerOwner ?? DEFAULT_BUILD_QUEUE.maxQueuedPerOwner,
  });
  // Everything signed here manages Formpacks: a dashboard session may do it under a delegation.
  const signed = requireSigner(new NonceCache(), { allowDelegation: true });

  const app = await createApiServer({
    name: 'pack',
    logger: opts.logger,
    description:
      'Formpack builder: upload a build context (tar), build it, follow the log, list, fetch and delete Formpacks.',
  });
  for (const type of ['application/x-tar', 'application/gzip', 'application/octet-stream']) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }

  /** The signer of a request that carries a signature (verified), or null for an unsigned one. */
  async function optionalSigner(req: Parameters<typeof signed>[0]): Promise<Signer | null> {
    if (req.headers['x-form-signature'] === undefined) return null;
    await signed(req);
    return req.signer ?? null;
  }

  /** Whether `signer` may see everything of Formpack `m`: its owner, or whom authorizeFetch allows. */
  async function mayFetch(signer: Signer | null, m: FormpackManifest): Promise<boolean> {
    if (!signer) return false;
    if (signer.address === m.owner || builder.requesters(m.id).includes(signer.address)) return true;
    return opts.authorizeFetch ? await opts.authorizeFetch(signer, m.id, m.owner) : false;
  }

  async function shown(req: Parameters<typeof signed>[0], m: FormpackManifest): Promise<FormpackManifest> {
    return (await mayFetch(await optionalSigner(req), m)) ? m : publicManifest(m);
  }

  app.post(
    '/contexts',
    {
      preHandler: signed,
      schema: {
        summary: 'Upload a build context: a tar (or tar.gz) of the Formfile and the files it copies',
        description:
          'Body: the archive. Sign with x-form-content-sha256 = sha256 hex of the body (the signature covers it). Refused: path traversal, absolute paths, symlinks out of the context, hard links, device files, truncated archives, archives over the size limits.',
        headers: Type.Object({ 'x-form-content-sha256': Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
        security: [{ formSignature: [] }],
        response: {
          201: Type.Object({ contextId: Type.String(), entries: Type.Integer(), bytes: Type.Integer() }),
          400: ErrorBodySchema,
        },
      },
    },
    async (req, reply) => {
      jobs.sweep();
      const owner = req.signer!.address;
      const body = req.body as Readable | undefined;
      if (!body || typeof body.pipe !== 'function') {
        contexts.assertRoom(owner); // a full quota is the answer even to a body that is no archive
        throw new FormError(
          'PACK_BAD_ARCHIVE',
          'Cannot accept the build context: send it as application/x-tar or application/gzip',
        );
      }
      const stored = await contexts.put(owner, body, req.headers['x-form-content-sha256']);
      return reply.status(201).send(stored);
    },
  );

  app.post(
    '/builds',
    {
      preHandler: signed,
      schema: {
        summary: 'Build an uploaded context into a Formpack (asynchronous; follow /builds/:buildId/log)',
        body: Type.Object({
          contextId: Type.String({ pattern: '^[0-9a-f]{24}$' }),
          formfile: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/]+$' })),
          idKey: Type.Optional(
            Type.String({
              pattern: '^[0-9a-f]{64}$',
              description: 'key of the password HMACs in the Formpack ID (default: the node key; see README)',
            }),
          ),
        }),
        security: [{ formSignature: [] }],
        response: { 202: BuildInfoSchema, 400: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req, reply) => {
      const ctx = contexts.take(req.body.contextId, req.signer!.address);
      const job = await startBuild({ builder, queue, jobs, log }, ctx, req.body);
      return reply.status(202).send(job.info);
    },
  );

  app.get(
    '/builds/:buildId',
    {
      schema: {
        summary: 'Status of a build',
        params: Type.Object({ buildId: Type.String() }),
        response: { 200: BuildInfoSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => jobs.get(req.params.buildId).info,
  );

  app.get(
    '/builds/:buildId/log',
    {
      schema: {
        summary: 'The build log as NDJSON (steps, tool output, then {"type":"end"}); streams until the build ends',
        params: Type.Object({ buildId: Type.String() }),
        response: {
          200: {
            description: 'One JSON build-log event per line (BuildLogLine), written as they happen',
            content: { 'application/x-ndjson': { schema: streamedBody() } },
          },
          404: ErrorBodySchema,
        },
      },
    },
    async (req, reply) => {
      const job = jobs.get(req.params.buildId);
      reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      for (const l of job.lines) reply.raw.write(`${JSON.stringify(l)}\n`);
      if (job.info.finishedAt) {
        reply.raw.end();
        return reply;
      }
      await new Promise<void>((resolve) => {
        const stop = jobs.follow(job, (l) => {
          reply.raw.write(`${JSON.stringify(l)}\n`);
          if (l.type === 'end') {
            stop();
            reply.raw.end();
            resolve();
          }
        });
        reply.raw.on('close', () => {
          stop();
          resolve();
        });
      });
      return reply;
    },
  );

  app.get(
    '/formpacks',
    {
      schema: {
        summary:
          "All Formpacks on this node (manifests, newest first); ENV values only in the signer's own (sign the GET)",
        response: { 200: Type.Object({ formpacks: Type.Array(ManifestSchema) }) },
      },
    },
    async (req) => {
      const signer = await optionalSigner(req);
      const out: FormpackManifest[] = [];
      for (const m of builder.list()) out.push((await mayFetch(signer, m)) ? m : publicManifest(m));
      return { formpacks: out };
    },
  );

  app.get(
    '/formpacks/:id',
    {
      schema: {
        summary: 'Manifest of a Formpack (ID or unique prefix); ENV values only for its owner (sign the GET)',
        params: IdParams,
        response: { 200: ManifestSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => shown(req, findFormpack(builder, req.params.id)),
  );

  app.delete(
    '/formpacks/:id',
    {
      preHandler: signed,
      schema: {
        summary: 'Delete a Formpack (its owner only)',
        params: IdParams,
        security: [{ formSignature: [] }],
        response: { 200: Type.Object({ deleted: Type.String() }), 403: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req) => {
      const m = findFormpack(builder, req.params.id);
      if (m.owner !== req.signer!.address) {
        throw new FormError('AUTH_FORBIDDEN', `Cannot delete Formpack ${m.id}: it belongs to ${m.owner}`);
      }
      builder.remove(m.id);
      return { deleted: m.id };
    },
  );

  app.get(
    '/formpacks/:id/artifacts/:name',
    {
      preHandler: signed,
      schema: {
        summary:
          'Download an artifact (disk, kernel, initramfs, manifest); signed by the owner or an admitted node; x-form-sha256 carries its hash',
        security: [{ formSignature: [] }],
        params: Type.Object({
          id: Type.String({ pattern: '^[0-9a-f]{6,64}$' }),
          name: Type.Union([
            Type.Literal('disk'),
            Type.Literal('kernel'),
            Type.Literal('initramfs'),
            Type.Literal('manifest'),
          ]),
        }),
        response: {
          200: {
            description: 'The artifact bytes (x-form-sha256: their hash), or the manifest as JSON',
            content: {
              'application/octet-stream': { schema: streamedBody('binary') },
              'application/json': { schema: ManifestSchema },
            },
          },
          403: ErrorBodySchema,
          404: ErrorBodySchema,
        },
      },
    },
    async (req, reply) => {
      const m = findFormpack(builder, req.params.id);
      if (!(await mayFetch(req.signer ?? null, m))) {
        throw new FormError(
          'AUTH_FORBIDDEN',
          `Cannot send Formpack ${m.id}: ${req.signer!.address} is neither its owner nor a node allowed to fetch it`,
          { hint: 'Sign the request with the key that built it (or, node to node, with an admitted node key).' },
        );
      }
      const dir = builder.pathOf(m.id);
      if (req.params.name === 'manifest') return reply.type('application/json').send(m);
      const name = req.params.name as ArtifactName;
      const path = join(dir, ARTIFACT_FILES[name]);
      if (!existsSync(path)) throw new FormError('PACK_NOT_FOUND', `Cannot find ${name} of Formpack ${m.id}`);
      reply.header('content-length', statSync(path).size);
      reply.header('x-form-sha256', m.artifacts[name].sha256);
      return reply.type('application/octet-stream').send(createReadStream(path));
    },
  );

  const close = async () => {
    jobs.abortUnfinished();
    await app.close();
    contexts.close();
  };
  return { app, builder, close };
}
