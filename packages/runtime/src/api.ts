import type { NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyRequest } from 'fastify';
import {
  CheckpointSchema,
  ImageSchema,
  ImportedImageSchema,
  ModuleSchema,
  ProcessSchema,
  ResultEntrySchema,
  ResultsSchema,
  RuntimeErrors,
  RuntimeHealthSchema,
  RuntimeInfoSchema,
  SendOutputSchema,
} from './api-schemas.ts';
import type { ImageStore } from './image-store.ts';
import { buildJsRuntimeImage } from './js-image.ts';
import { buildLuaRuntimeImage } from './lua-image.ts';
import type { ProcessManager } from './manager.ts';
import { moduleToJson } from './module.ts';
import { sameAddress, verifyOwnerItem } from './owner-auth.ts';

const Pid = Type.Object({ pid: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const TagList = Type.Array(Type.Object({ name: Type.String(), value: Type.String() }), { maxItems: 128 });
const Mode = Type.Union([Type.Literal('apply'), Type.Literal('replay'), Type.Literal('dry-run')]);

/**
 * The runtime's management API (signed requests for everything that changes state):
 * modules, images, processes, messages, results, checkpoint and restore.
 */
export function registerRuntimeRoutes(
  app: ApiServer,
  deps: {
    manager: ProcessManager;
    images: ImageStore;
    cacheDir: string;
    nonces: NonceCache;
    node: { id: string; name: string; desc: string; url: string };
    /** Addresses allowed to import images and register modules; empty or absent = nobody. */
    admins?: string[];
  },
): void {
  const { manager, images } = deps;
  const verify = requireSigner(deps.nonces);
  const signed = { preHandler: verify };
  const admins = new Set((deps.admins ?? []).map((a) => a.toLowerCase()));
  const isAdmin = (addr: string | undefined) => addr?.startsWith('0x') === true && admins.has(addr.toLowerCase());
  /** Images and modules: only the configured admins; with none configured, nobody (an image is host files as root). */
  const admin = {
    preHandler: async (req: FastifyRequest) => {
      await verify(req);
      if (admins.size === 0)
        throw new FormError(
          'AUTH_FORBIDDEN',
          'Cannot import images or register modules: this runtime has no admins configured, so nobody may',
          {
            hint: 'Set `admins: [0x…]` (the addresses whose signed requests may import images and register modules) in the runtime config.yaml, or FORM_RUNTIME_ADMINS=0x…,0x… in its environment, and restart the runtime.',
          },
        );
      if (!isAdmin(req.signer?.address))
        throw new FormError(
          'AUTH_FORBIDDEN',
          `Cannot change images or modules: ${req.signer?.address} is not an admin of this runtime`,
          {
            hint: 'Ask the node operator to add your address to `admins` in the runtime config.',
          },
        );
    },
  };
  /** Checkpoint (taking and reading), restore and terminate belong to the process owner (and admins). */
  const ownerOf = (pid: string) => ({
    check(req: FastifyRequest, what = 'change', who = req.signer?.address) {
      const owner = manager.process(pid).owner;
      if (!(who !== undefined && sameAddress(who, owner)) && !isAdmin(who))
        throw new FormError('AUTH_FORBIDDEN', `Cannot ${what} process ${pid}: only its owner ${owner} may`);
    },
  });
  /**
   * Checkpoint and restore: signed with Formation's request headers (Ethereum keys), or as an ANS-104
   * data item (application/octet-stream) by any AO signer — an aos user's Arweave wallet included.
   */
  const ownerRequest = (action: 'Checkpoint' | 'Restore') => ({
    preHandler: async (req: FastifyRequest) => {
      if (!Buffer.isBuffer(req.body)) return verify(req);
      const pid = (req.params as { pid: string }).pid;
      const item = verifyOwnerItem(req.body, pid, action, deps.nonces);
      ownerOf(pid).check(req, action.toLowerCase(), item.address);
      (req as FastifyRequest & { ownerItem?: typeof item }).ownerItem = item;
    },
  });

  app.get('/health', { schema: { response: { 200: RuntimeHealthSchema } } }, async () => ({
    ok: true,
    nodeId: deps.node.id,
    nodeName: deps.node.name,
    processes: manager.listProcesses().length,
  }));
  app.get('/info', { schema: { response: { 200: RuntimeInfoSchema } } }, async () => ({
    ...deps.node,
    modules: manager.listModules().length,
    processes: manager.listProcesses().length,
  }));

  app.get(
    '/modules',
    { schema: { response: { 200: Type.Object({ modules: Type.Array(ModuleSchema) }) } } },
    async () => ({ modules: manager.listModules().map(moduleToJson) }),
  );
  app.get(
    '/modules/:id',
    { schema: { params: Type.Object({ id: Type.String() }), response: { 200: ModuleSchema, 404: ErrorBodySchema } } },
    async (req) => moduleToJson(manager.module(req.params.id)),
  );
  app.post(
    '/modules',
    {
      ...admin,
      schema: {
        body: Type.Object({}, { additionalProperties: true }),
        response: { 201: ModuleSchema, ...RuntimeErrors },
      },
    },
    async (req, reply) => {
      const mod = await manager.registerModule(req.body);
      return reply.status(201).send(moduleToJson(mod));
    },
  );

  app.get('/images', { schema: { response: { 200: Type.Object({ images: Type.Array(ImageSchema) }) } } }, async () => ({
    images: (await images.list()).map(({ rootfs: _r, ...i }) => i),
  }));
  app.post(
    '/images/import',
    {
      ...admin,
      schema: {
        body: Type.Object({ path: Type.String({ minLength: 1 }), expectId: Type.Optional(Type.String()) }),
        response: { 201: ImportedImageSchema, ...RuntimeErrors },
      },
    },
    async (req, reply) => {
      const img = await images.import(req.body.path, req.body.expectId ? { expectId: req.body.expectId } : {});
      return reply.status(201).send({ id: img.id, repoTags: img.repoTags });
    },
  );
  // build one of our runtime images here (reproducibly: the same image id as anywhere else) and import it
  for (const [path, build] of [
    ['/images/build-js', buildJsRuntimeImage],
    ['/images/build-lua', buildLuaRuntimeImage],
  ] as const) {
    app.post(
      path,
      { ...admin, schema: { response: { 201: ImportedImageSchema, ...RuntimeErrors } } },
      async (_req, reply) => {
        const built = await build(deps.cacheDir);
        const img = await images.import(built.archive, { expectId: built.imageId });
        return reply.status(201).send({ id: img.id, repoTags: img.repoTags, archive: built.archive });
      },
    );
  }

  app.get(
    '/processes',
    { schema: { response: { 200: Type.Object({ processes: Type.Array(ProcessSchema) }) } } },
    async () => ({ processes: manager.listProcesses() }),
  );
  app.get(
    '/processes/:pid',
    { schema: { params: Pid, response: { 200: ProcessSchema, 404: ErrorBodySchema } } },
    async (req) => manager.process(req.params.pid),
  );
  app.post(
    '/processes',
    {
      ...signed,
      schema: {
        body: Type.Object(
          {
            module: Type.String({ minLength: 1 }),
            data: Type.Optional(Type.String({ maxLength: 4 * 1024 * 1024 })),
            tags: Type.Optional(TagList),
          },
          { additionalProperties: false },
        ),
        response: { 201: ProcessSchema, ...RuntimeErrors },
      },
    },
    async (req, reply) => {
      const p = await manager.spawn({
        module: req.body.module,
        owner: req.signer?.address ?? '',
        ...(req.body.data !== undefined ? { data: req.body.data } : {}),
        ...(req.body.tags ? { tags: req.body.tags } : {}),
      });
      return reply.status(201).send(p);
    },
  );
  app.delete(
    '/processes/:pid',
    { ...signed, schema: { params: Pid, response: { 200: Type.Object({ ok: Type.Boolean() }), ...RuntimeErrors } } },
    async (req) => {
      ownerOf(req.params.pid).check(req);
      await manager.terminate(req.params.pid);
      return { ok: true };
    },
  );
  app.post(
    '/processes/:pid/messages',
    {
      ...signed,
      schema: {
        params: Pid,
        body: Type.Object(
          {
            action: Type.String({ minLength: 1, maxLength: 256 }),
            data: Type.Optional(Type.String()),
            params: Type.Optional(Type.Record(Type.String(), Type.String())),
            itemId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
            mode: Type.Optional(Mode),
          },
          { additionalProperties: false },
        ),
        response: { 200: SendOutputSchema, ...RuntimeErrors },
      },
    },
    async (req) =>
      manager.send(req.params.pid, {
        from: req.signer?.address ?? '',
        action: req.body.action,
        ...(req.body.data !== undefined ? { data: req.body.data } : {}),
        ...(req.body.params ? { params: req.body.params } : {}),
        ...(req.body.itemId ? { itemId: req.body.itemId } : {}),
        ...(req.body.mode ? { mode: req.body.mode } : {}),
      }),
  );
  app.get(
    '/processes/:pid/results',
    {
      schema: {
        params: Pid,
        querystring: Type.Object({
          from: Type.Optional(Type.Integer({ minimum: 1 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        }),
        response: { 200: ResultsSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => ({ results: await manager.results(req.params.pid, req.query.from ?? 1, req.query.limit ?? 100) }),
  );
  app.get(
    '/processes/:pid/results/:ref',
    {
      schema: {
        params: Type.Object({ pid: Type.String(), ref: Type.String() }),
        response: { 200: ResultEntrySchema, 404: ErrorBodySchema },
      },
    },
    async (req) => manager.result(req.params.pid, req.params.ref),
  );
  app.post(
    '/processes/:pid/checkpoint',
    { ...ownerRequest('Checkpoint'), schema: { params: Pid, response: { 200: CheckpointSchema, ...RuntimeErrors } } },
    async (req) => {
      if (!Buffer.isBuffer(req.body)) ownerOf(req.params.pid).check(req);
      return manager.checkpoint(req.params.pid);
    },
  );
  // a checkpoint is the process's whole state and workspace: its owner's (and admins'), signed
  app.get(
    '/processes/:pid/checkpoints/:sha',
    {
      ...signed,
      schema: {
        params: Type.Object({ pid: Type.String(), sha: Type.String() }),
        response: {
          200: {
            description: 'The checkpoint blob (JSON text, sent as stored)',
            content: { 'application/json': { schema: Type.Object({}, { additionalProperties: true }) } },
          },
          ...RuntimeErrors,
        },
      },
    },
    async (req, reply) => {
      ownerOf(req.params.pid).check(req, 'read the checkpoints of');
      return reply.type('application/json').send(await manager.checkpointData(req.params.pid, req.params.sha));
    },
  );
  const RestoreBody = Type.Object(
    { sha256: Type.Optional(Type.String()), data: Type.Optional(Type.String()) },
    { additionalProperties: false },
  );
  app.post(
    '/processes/:pid/restore',
    { ...ownerRequest('Restore'), schema: { params: Pid, response: { 200: ProcessSchema, ...RuntimeErrors } } },
    async (req) => {
      const item = (req as FastifyRequest & { ownerItem?: { sha256?: string } }).ownerItem;
      if (Buffer.isBuffer(req.body)) return manager.restore(req.params.pid, { sha256: item?.sha256 ?? '' });
      if (!Value.Check(RestoreBody, req.body))
        throw new FormError('BAD_REQUEST', 'Cannot restore: the body must be {sha256} or {data}');
      ownerOf(req.params.pid).check(req);
      return manager.restore(req.params.pid, req.body);
    },
  );
}
