import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { NonceCache } from '@formation/identity';
import { FormError, type FormpackManifest, isFormError } from '@formation/interface';
import { type ApiServer, createApiServer, type Logger, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { DEFAULT_ARCHIVE_LIMITS, extractContext } from './archive.ts';
import { ARTIFACT_FILES, type ArtifactName, type BuildEvent, Builder } from './builder.ts';
import { DEFAULT_PACK_CACHE } from './config.ts';
import { loadSpec } from './formfile.ts';

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
  /** Use this builder instead of creating one. */
  builder?: Builder;
}

export type BuildStatus = 'queued' | 'running' | 'done' | 'failed';

/** A build as the API reports it. */
export interface BuildInfo {
  buildId: string;
  /** The Formpack ID this build produces. */
  id: string;
  name: string;
  owner: string;
  status: BuildStatus;
  step: string | null;
  cached: boolean;
  startedAt: string;
  finishedAt: string | null;
  error: { code: string; message: string; hint?: string } | null;
}

/** One line of `GET /builds/:id/log` (NDJSON): a build event, or the end of the build. */
export type BuildLogLine = BuildEvent | { type: 'end'; status: BuildStatus; error: BuildInfo['error'] };

interface Job {
  info: BuildInfo;
  lines: BuildLogLine[];
  listeners: Set<(l: BuildLogLine) => void>;
  abort: AbortController;
}

interface UploadedContext {
  dir: string;
  owner: string;
  expires: number;
}

const MAX_LOG_LINES = 5000;
const CONTEXT_TTL_MS = 60 * 60_000;
const SHA_RE = /^[0-9a-f]{64}$/;

const ErrorSchema = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) }),
});
const BuildInfoSchema = Type.Object({
  buildId: Type.String(),
  id: Type.String(),
  name: Type.String(),
  owner: Type.String(),
  status: Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('done'), Type.Literal('failed')]),
  step: Type.Union([Type.String(), Type.Null()]),
  cached: Type.Boolean(),
  startedAt: Type.String(),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([
    Type.Null(),
    Type.Object({ code: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) }),
  ]),
});
const ManifestSchema = Type.Object(
  { id: Type.String(), name: Type.String(), owner: Type.String() },
  { additionalProperties: true },
);
const IdParams = Type.Object({ id: Type.String({ minLength: 6, maxLength: 64, pattern: '^[0-9a-f]+$' }) });

/** A tiny FIFO semaphore: at most `n` builds run at once (2 cores are shared). */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
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
      logger: opts.logger,
    });
  const maxUpload = opts.maxUploadBytes ?? 1024 * 2 ** 20;
  const limits = { ...DEFAULT_ARCHIVE_LIMITS, maxBytes: opts.maxContextBytes ?? DEFAULT_ARCHIVE_LIMITS.maxBytes };
  const contextsDir = join(opts.dataDir, 'pack-contexts');
  rmSync(contextsDir, { recursive: true, force: true });
  mkdirSync(contextsDir, { recursive: true });
  const contexts = new Map<string, UploadedContext>();
  const jobs = new Map<string, Job>();
  const slots = new Slots(opts.maxConcurrentBuilds ?? 1);
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

  function sweepContexts(): void {
    const now = Date.now();
    // Finished builds are kept for an hour (status and log stay readable), then forgotten.
    for (const [id, j] of jobs) {
      if (j.info.finishedAt && Date.parse(j.info.finishedAt) + CONTEXT_TTL_MS < now) jobs.delete(id);
    }
    for (const [id, c] of contexts) {
      if (c.expires < now) {
        contexts.delete(id);
        rmSync(c.dir, { recursive: true, force: true });
      }
    }
  }

  function resolveId(idOrPrefix: string): string {
    if (SHA_RE.test(idOrPrefix)) return idOrPrefix;
    const found = builder.list().filter((m) => m.id.startsWith(idOrPrefix));
    if (found.length === 1) return found[0]!.id;
    if (found.length > 1)
      throw new FormError('BAD_REQUEST', `Cannot pick a Formpack: ${idOrPrefix} matches ${found.length} IDs`);
    throw new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${idOrPrefix}`, {
      hint: 'List them with `form pack list`.',
    });
  }

  function manifestOf(idOrPrefix: string): FormpackManifest {
    const m = builder.get(resolveId(idOrPrefix));
    if (!m)
      throw new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${idOrPrefix}`, {
        hint: 'List them with `form pack list`.',
      });
    return m;
  }

  function push(job: Job, line: BuildLogLine): void {
    job.lines.push(line);
    if (job.lines.length > MAX_LOG_LINES) job.lines.splice(0, job.lines.length - MAX_LOG_LINES);
    for (const l of job.listeners) l(line);
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
          400: ErrorSchema,
        },
      },
    },
    async (req, reply) => {
      sweepContexts();
      const body = req.body as Readable | undefined;
      if (!body || typeof (body as Readable).pipe !== 'function') {
        throw new FormError(
          'PACK_BAD_ARCHIVE',
          'Cannot accept the build context: send it as application/x-tar or application/gzip',
        );
      }
      const contextId = randomBytes(12).toString('hex');
      const tarFile = join(contextsDir, `${contextId}.tar`);
      const dir = join(contextsDir, contextId);
      try {
        const sha = await new Promise<string>((resolve, reject) => {
          const h = createHash('sha256');
          let n = 0;
          const out = createWriteStream(tarFile);
          body.on('data', (c: Buffer) => {
            n += c.length;
            h.update(c);
            if (n > maxUpload) {
              body.destroy();
              out.destroy();
              reject(
                new FormError(
                  'PACK_BAD_ARCHIVE',
                  `Cannot accept the build context: the upload is over ${Math.round(maxUpload / 2 ** 20)} MiB`,
                ),
              );
            }
          });
          body.on('error', reject);
          out.on('error', (err) =>
            reject(
              (err as NodeJS.ErrnoException).code === 'ENOSPC'
                ? new FormError('DISK_FULL', 'Cannot store the upload: no space left on the node')
                : err,
            ),
          );
          body.pipe(out).on('finish', () => resolve(h.digest('hex')));
        });
        if (sha !== req.headers['x-form-content-sha256']) {
          throw new FormError(
            'AUTH_BAD_SIGNATURE',
            'Cannot accept the build context: its sha256 does not match x-form-content-sha256',
          );
        }
        const r = await extractContext(tarFile, dir, limits);
        contexts.set(contextId, { dir, owner: req.signer!.address, expires: Date.now() + CONTEXT_TTL_MS });
        return reply.status(201).send({ contextId, entries: r.entries, bytes: r.bytes });
      } catch (err) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      } finally {
        rmSync(tarFile, { force: true });
      }
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
        }),
        security: [{ formSignature: [] }],
        response: { 202: BuildInfoSchema, 400: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (req, reply) => {
      const ctx = contexts.get(req.body.contextId);
      if (!ctx)
        throw new FormError('NOT_FOUND', `Cannot build: no uploaded context ${req.body.contextId}`, {
          hint: 'Upload it with POST /contexts first (contexts expire after an hour and are used once).',
        });
      if (ctx.owner !== req.signer!.address)
        throw new FormError('AUTH_FORBIDDEN', 'Cannot build: this context was uploaded by another key');
      contexts.delete(req.body.contextId);
      let spec: Awaited<ReturnType<typeof loadSpec>>['spec'];
      let id: string;
      try {
        ({ spec } = await loadSpec(ctx.dir, req.body.formfile ?? 'Formfile', req.body.formfile ?? 'Formfile'));
        id = await builder.idOf(spec, ctx.dir);
      } catch (err) {
        rmSync(ctx.dir, { recursive: true, force: true });
        throw err;
      }
      const existing = builder.get(id);
      const now = new Date().toISOString();
      const job: Job = {
        info: {
          buildId: randomBytes(8).toString('hex'),
          id,
          name: spec.name,
          owner: req.signer!.address,
          status: existing ? 'done' : 'queued',
          step: existing ? 'cached' : null,
          cached: !!existing,
          startedAt: now,
          finishedAt: existing ? now : null,
          error: null,
        },
        lines: [],
        listeners: new Set(),
        abort: new AbortController(),
      };
      jobs.set(job.info.buildId, job);
      if (existing) {
        rmSync(ctx.dir, { recursive: true, force: true });
        push(job, { type: 'step', step: 'cached', detail: id, elapsedMs: 0 });
        push(job, { type: 'end', status: 'done', error: null });
        return reply.status(202).send(job.info);
      }
      void (async () => {
        await slots.take();
        job.info.status = 'running';
        try {
          const r = await builder.build({
            spec,
            dir: ctx.dir,
            owner: job.info.owner,
            signal: job.abort.signal,
            onEvent: (e) => {
              if (e.type === 'step') job.info.step = e.step;
              push(job, e);
            },
          });
          job.info.cached = r.cached;
          job.info.status = 'done';
        } catch (err) {
          const fe = isFormError(err)
            ? (err as FormError)
            : new FormError('INTERNAL', `Cannot build: ${(err as Error).message}`);
          job.info.status = 'failed';
          job.info.error = { code: fe.code, message: fe.message, ...(fe.hint ? { hint: fe.hint } : {}) };
          if (fe.status >= 500) log.error({ err: fe, buildId: job.info.buildId }, 'build failed');
        } finally {
          slots.give();
          job.info.finishedAt = new Date().toISOString();
          rmSync(ctx.dir, { recursive: true, force: true });
          push(job, { type: 'end', status: job.info.status, error: job.info.error });
          job.listeners.clear();
        }
      })();
      return reply.status(202).send(job.info);
    },
  );

  function jobOf(buildId: string): Job {
    const j = jobs.get(buildId);
    if (!j) throw new FormError('NOT_FOUND', `Cannot find build ${buildId}`);
    return j;
  }

  app.get(
    '/builds/:buildId',
    {
      schema: {
        summary: 'Status of a build',
        params: Type.Object({ buildId: Type.String() }),
        response: { 200: BuildInfoSchema, 404: ErrorSchema },
      },
    },
    async (req) => jobOf(req.params.buildId).info,
  );

  app.get(
    '/builds/:buildId/log',
    {
      schema: {
        summary: 'The build log as NDJSON (steps, tool output, then {"type":"end"}); streams until the build ends',
        params: Type.Object({ buildId: Type.String() }),
      },
    },
    async (req, reply) => {
      const job = jobOf(req.params.buildId);
      reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      for (const l of job.lines) reply.raw.write(`${JSON.stringify(l)}\n`);
      if (job.info.finishedAt) {
        reply.raw.end();
        return reply;
      }
      await new Promise<void>((resolve) => {
        const listener = (l: BuildLogLine) => {
          reply.raw.write(`${JSON.stringify(l)}\n`);
          if (l.type === 'end') {
            job.listeners.delete(listener);
            reply.raw.end();
            resolve();
          }
        };
        job.listeners.add(listener);
        reply.raw.on('close', () => {
          job.listeners.delete(listener);
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
        summary: 'All Formpacks on this node (manifests, newest first)',
        response: { 200: Type.Object({ formpacks: Type.Array(ManifestSchema) }) },
      },
    },
    async () => ({ formpacks: builder.list() }),
  );

  app.get(
    '/formpacks/:id',
    {
      schema: {
        summary: 'Manifest of a Formpack (ID or unique prefix)',
        params: IdParams,
        response: { 200: ManifestSchema, 404: ErrorSchema },
      },
    },
    async (req) => manifestOf(req.params.id),
  );

  app.delete(
    '/formpacks/:id',
    {
      preHandler: signed,
      schema: {
        summary: 'Delete a Formpack (its owner only)',
        params: IdParams,
        security: [{ formSignature: [] }],
        response: { 200: Type.Object({ deleted: Type.String() }), 403: ErrorSchema, 404: ErrorSchema },
      },
    },
    async (req) => {
      const m = manifestOf(req.params.id);
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
      schema: {
        summary: 'Download an artifact (disk, kernel, initramfs, manifest); x-form-sha256 carries its hash',
        params: Type.Object({
          id: Type.String({ pattern: '^[0-9a-f]{6,64}$' }),
          name: Type.Union([
            Type.Literal('disk'),
            Type.Literal('kernel'),
            Type.Literal('initramfs'),
            Type.Literal('manifest'),
          ]),
        }),
      },
    },
    async (req, reply) => {
      const m = manifestOf(req.params.id);
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
    for (const j of jobs.values()) if (!j.info.finishedAt) j.abort.abort();
    await app.close();
    for (const name of existsSync(contextsDir) ? readdirSync(contextsDir) : []) {
      rmSync(join(contextsDir, name), { recursive: true, force: true });
    }
  };
  return { app, builder, close };
}
