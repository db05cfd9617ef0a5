import { existsSync, readFileSync, statSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type {} from '@fastify/swagger';
import { expectedMeasurement } from '@formation/attest';
import {
  type DelegatedKey,
  type Delegation,
  addressOf as deriveAddress,
  type KeyPair,
  NonceCache,
} from '@formation/identity';
import { type Address, FormError, type FormpackManifest } from '@formation/interface';
import { PackClient } from '@formation/pack';
import { deploymentStatus, placementNodesFrom, vmNameFor } from '@formation/scheduler';
import { ApiClient, type ApiServer, createApiServer, type Logger, requireSigner } from '@formation/service';
import { httpStateClient, type InstanceView, type NodeView, shipFormpack } from '@formation/state';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type {
  ActionResult,
  BuildStarted,
  CommitResultInfo,
  ConsoleInfo,
  DiskInfo,
  FormpackDetail,
  FormpackInfo,
  InstanceInfo,
  LoginTokenResponse,
  MetricSample,
  NetworkInfo,
  PeerSummary,
  ReplicaInfo,
  SessionInfo,
  ShipResultInfo,
} from '../api-types.ts';
import { readCookie, type Session, SessionStore } from './sessions.ts';
import { NodeApis, type NodeApiUrls } from './upstream.ts';

export const SESSION_COOKIE = 'form_session';
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

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String(), hint: Type.Optional(Type.String()) }),
});

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
  const sessions = new SessionStore({ tokenTtlMs: opts.tokenTtlMs, sessionTtlMs: opts.sessionTtlMs });
  const staticDir = resolve(opts.staticDir ?? DEFAULT_STATIC_DIR);
  const metrics = new Metrics(apis, opts.maxSamples ?? 360);

  app.addHook('onSend', async (_req, reply) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) reply.header(k, v);
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });

  const session = (req: FastifyRequest): Session => {
    const s = sessions.get(readCookie(req.headers.cookie, SESSION_COOKIE));
    if (!s) {
      throw new FormError('AUTH_MISSING', 'Not signed in', {
        hint: 'Run `form web login` and open the link it prints.',
      });
    }
    return s;
  };

  const loginNonces = new NonceCache();
  app.post(
    '/api/login/token',
    {
      preHandler: requireSigner(loginNonces),
      schema: {
        summary: 'Mint a one-time login link for the signing developer (used by `form web login`)',
        security: [{ formSignature: [] }],
        response: {
          200: Type.Object({
            token: Type.String(),
            expiresAt: Type.Integer(),
            path: Type.String(),
            delegate: Type.String(),
            sessionExpiresAt: Type.Integer(),
          }),
          401: ErrorBody,
        },
      },
    },
    async (req): Promise<LoginTokenResponse> => {
      const { address, publicKey } = req.signer!;
      const t = sessions.mintToken(address, publicKey);
      log.info({ address }, 'login link issued');
      return { ...t, path: `/login#token=${t.token}` };
    },
  );

  app.post(
    '/api/login/delegation',
    {
      preHandler: requireSigner(loginNonces),
      schema: {
        summary: "Attach the developer's signed delegation to a login token (lets that session manage for them)",
        security: [{ formSignature: [] }],
        body: Type.Object(
          {
            token: Type.String({ minLength: 10, maxLength: 200 }),
            delegation: Type.Object({
              owner: Type.String(),
              delegate: Type.String(),
              scope: Type.Literal('manage'),
              expiresAt: Type.Integer(),
              sig: Type.String(),
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ expiresAt: Type.Integer() }), 401: ErrorBody, 403: ErrorBody },
      },
    },
    async (req) => {
      const r = sessions.delegate(req.body.token, req.signer!.publicKey, req.body.delegation as Delegation);
      log.info({ address: req.signer!.address, expiresAt: r.expiresAt }, 'login link may manage (delegation)');
      return r;
    },
  );

  app.post(
    '/api/session',
    {
      schema: {
        summary: 'Trade a one-time login token for a session cookie',
        body: Type.Object({ token: Type.String({ minLength: 10, maxLength: 200 }) }, { additionalProperties: false }),
        response: {
          200: Type.Object({ address: Type.String(), expiresAt: Type.Integer(), canManage: Type.Boolean() }),
          401: ErrorBody,
        },
      },
    },
    async (req, reply): Promise<SessionInfo> => {
      const r = sessions.redeem(req.body.token);
      if (!r) {
        throw new FormError('AUTH_EXPIRED', 'This login link was already used or has expired', {
          hint: 'Run `form web login` again and open the new link.',
        });
      }
      const maxAge = Math.floor((r.session.expiresAt - Date.now()) / 1000);
      reply.header(
        'set-cookie',
        `${SESSION_COOKIE}=${r.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}${req.protocol === 'https' ? '; Secure' : ''}`,
      );
      log.info({ address: r.session.address, canManage: !!r.session.key }, 'dashboard session opened');
      return { address: r.session.address, expiresAt: r.session.expiresAt, canManage: !!r.session.key };
    },
  );

  app.get('/api/session', { schema: { summary: 'Who is signed in' } }, async (req): Promise<SessionInfo> => {
    const s = session(req);
    return { address: s.address, expiresAt: s.expiresAt, canManage: !!s.key };
  });

  app.delete('/api/session', { schema: { summary: 'Sign out' } }, async (req, reply) => {
    sessions.end(readCookie(req.headers.cookie, SESSION_COOKIE));
    reply.header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return { ok: true };
  });

  app.get('/api/instances', { schema: { summary: "The signed-in developer's instances" } }, async (req) => {
    const s = session(req);
    const ctx = await instanceContext(apis);
    return ctx.instances.filter((i) => !i.deleted && i.ownerAddress === s.address).map((i) => instanceInfo(i, ctx));
  });

  app.get(
    '/api/instances/:id',
    { schema: { summary: 'One of your instances', params: Type.Object({ id: Type.String({ maxLength: 64 }) }) } },
    async (req): Promise<InstanceInfo> => {
      const s = session(req);
      const ctx = await instanceContext(apis);
      return instanceInfo(ownInstance(ctx.instances, req.params.id, s.address), ctx);
    },
  );

  app.get(
    '/api/instances/:id/console',
    {
      schema: {
        summary: 'Serial console of your instance on this node',
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }),
        querystring: Type.Object({ bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })) }),
      },
    },
    async (req): Promise<ConsoleInfo> => {
      const s = session(req);
      const inst = ownInstance(await apis.instances(), req.params.id, s.address);
      const vmName = vmNameFor(inst);
      const vm = (await apis.vms()).find((v) => v.name === vmName);
      if (!vm) {
        throw new FormError('VM_NOT_FOUND', `No replica of ${inst.name} runs on this node`, {
          hint: "Open the dashboard of a node that runs it, or wait for this node's replica to start.",
        });
      }
      const c = await apis.console(vm.id, req.query.bytes ?? 16384);
      return { instanceId: inst.id, vmName, output: c.output };
    },
  );

  app.get('/api/formpacks', { schema: { summary: "The signed-in developer's Formpacks" } }, async (req) => {
    const s = session(req);
    const [published, local] = await Promise.all([apis.publishedFormpacks(), localFormpacks(apis, log)]);
    const out = new Map<string, FormpackInfo>();
    for (const m of local.filter((m) => m.owner === s.address)) {
      out.set(m.id, {
        id: m.id,
        name: m.name,
        size: Object.values(m.artifacts).reduce((n, a) => n + a.bytes, 0),
        published: false,
        local: true,
        createdAt: m.createdAt,
      });
    }
    for (const p of published.filter((p) => p.owner === s.address)) {
      const cur = out.get(p.id);
      out.set(p.id, cur ? { ...cur, published: true } : { ...p, published: true, local: false, createdAt: null });
    }
    return [...out.values()].map(({ id, name, size, published, local, createdAt }) => ({
      id,
      name,
      size,
      published,
      local,
      createdAt,
    }));
  });

  app.get(
    '/api/formpacks/:id',
    {
      schema: {
        summary: 'One of your Formpacks: manifest, Formfile, size, measurement',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{6,64}$' }) }),
      },
    },
    async (req): Promise<FormpackDetail> => {
      const s = session(req);
      const id = req.params.id;
      const [published, instances] = await Promise.all([apis.publishedFormpacks(), apis.instances()]);
      let manifest: Awaited<ReturnType<NodeApis['manifest']>> | undefined;
      try {
        manifest = await apis.manifest(id);
      } catch (err) {
        if ((err as FormError).status !== 404) throw err;
      }
      const pub = published.find((p) => p.id === id || (manifest && p.id === manifest.id));
      const owner = manifest?.owner ?? pub?.owner;
      if (!owner || owner !== s.address) {
        throw new FormError('PACK_NOT_FOUND', `You have no Formpack ${id}`, {
          hint: 'The Formpacks page lists yours.',
        });
      }
      const fullId = manifest?.id ?? pub!.id;
      const m = manifest as (typeof manifest & { measurement?: string }) | undefined;
      return {
        id: fullId,
        name: manifest?.name ?? pub!.name,
        size: manifest ? Object.values(manifest.artifacts).reduce((n, a) => n + a.bytes, 0) : pub!.size,
        published: pub !== undefined,
        local: manifest !== undefined,
        createdAt: manifest?.createdAt ?? null,
        sha256s: pub?.sha256s ?? Object.fromEntries(Object.entries(manifest!.artifacts).map(([k, a]) => [k, a.sha256])),
        manifest: m
          ? {
              resources: m.resources,
              cmdline: m.cmdline,
              init: m.init,
              artifacts: m.artifacts as unknown as Record<string, { file: string; sha256: string; bytes: number }>,
              formfile: m.formfile as unknown as Record<string, unknown>,
              // What an instance of it must attest to (`form pack inspect --measurement`), from the manifest alone.
              measurement: measurementOf(m),
            }
          : null,
        instances: instances
          .filter((i) => !i.deleted && i.formpackId === fullId && i.ownerAddress === s.address)
          .map((i) => ({ id: i.id, name: i.name })),
      };
    },
  );

  app.get('/api/network', { schema: { summary: 'Nodes, formnet peers and load samples' } }, async (req) => {
    session(req);
    const [nodes, peers, allocations, self, instances] = await Promise.all([
      apis.nodes(),
      apis.peers(),
      apis.allocations(),
      apis.self().catch(() => null),
      apis.instances(),
    ]);
    const used = usedByNode(instances);
    const kindOf = new Map(allocations.map((a) => [a.peer, a.kind]));
    const out: NetworkInfo = {
      self,
      nodes: nodes.map((n) => nodeSummary(n, self?.node, used.get(n.id))),
      peers: peers.map((p): PeerSummary => {
        const node = nodes.find((n) => n.id === p.publicKey);
        const k = node ? 'node' : kindOf.get(p.publicKey);
        const kind = k === 'node' || k === 'instance' || k === 'developer' ? k : node ? 'node' : 'other';
        const address = addressOfKey(p.publicKey, nodes);
        return {
          publicKey: p.publicKey,
          address,
          kind,
          label: node?.name ?? `${kind} ${address.slice(0, 10)}`,
          endpoint: p.endpoint,
          allowedIps: p.allowedIps,
        };
      }),
      samples: metrics.all(),
    };
    return out;
  });

  // ---- Actions: made with the session key under the developer's delegation -------------------------

  /** The session's acting key; refuses read-only sessions and requests from another origin. */
  const manager = (req: FastifyRequest): { s: Session; key: DelegatedKey } => {
    const s = session(req);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host = '';
      try {
        host = new URL(origin).host;
      } catch {}
      if (host !== req.headers.host) {
        throw new FormError('AUTH_FORBIDDEN', `Cannot act for a request from another site (${origin})`);
      }
    }
    if (!s.key) {
      throw new FormError('AUTH_FORBIDDEN', 'This dashboard session is read-only', {
        hint: 'Sign in with `form web login` (without --read-only) to ship, start, stop, delete and commit here.',
      });
    }
    return { s, key: s.key };
  };
  const stateClient = httpStateClient(opts.urls.state);
  const InstanceParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
  const ActionResponse = {
    200: Type.Object({ ok: Type.Literal(true), id: Type.String(), message: Type.String() }),
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
  };

  for (const [verb, desired] of [
    ['start', 'running'],
    ['stop', 'stopped'],
  ] as const) {
    app.post(
      `/api/instances/:id/${verb}`,
      {
        schema: {
          summary: `${verb === 'start' ? 'Start' : 'Stop'} your instance (every replica)`,
          params: InstanceParams,
          response: ActionResponse,
        },
      },
      async (req): Promise<ActionResult> => {
        const { s, key } = manager(req);
        const inst = ownInstance(await apis.instances(), req.params.id, s.address);
        await stateClient.author(key, 'instance.update', { instanceId: inst.id, desired });
        log.info({ address: s.address, instance: inst.id, desired }, `dashboard: ${verb}`);
        return { ok: true, id: inst.id, message: `Asked to ${verb} ${inst.name}` };
      },
    );
  }

  app.post(
    '/api/instances/:id/replicas',
    {
      schema: {
        summary: 'Scale your instance: the replica count every node places by',
        params: InstanceParams,
        body: Type.Object({ replicas: Type.Integer({ minimum: 1, maximum: 16 }) }, { additionalProperties: false }),
        response: ActionResponse,
      },
    },
    async (req): Promise<ActionResult> => {
      const { s, key } = manager(req);
      const inst = ownInstance(await apis.instances(), req.params.id, s.address);
      const { replicas } = req.body;
      if (inst.replicas === replicas)
        return { ok: true, id: inst.id, message: `${inst.name} already has ${replicas} replica(s)` };
      await stateClient.author(key, 'instance.update', { instanceId: inst.id, replicas });
      log.info({ address: s.address, instance: inst.id, replicas }, 'dashboard: scale');
      return {
        ok: true,
        id: inst.id,
        message: `Asked for ${replicas} replica(s) of ${inst.name} (was ${inst.replicas})`,
      };
    },
  );

  app.delete(
    '/api/instances/:id',
    {
      schema: {
        summary: 'Delete your instance (its VMs are removed)',
        params: InstanceParams,
        response: ActionResponse,
      },
    },
    async (req): Promise<ActionResult> => {
      const { s, key } = manager(req);
      const inst = ownInstance(await apis.instances(), req.params.id, s.address);
      await stateClient.author(key, 'instance.delete', { instanceId: inst.id });
      log.info({ address: s.address, instance: inst.id }, 'dashboard: delete');
      return { ok: true, id: inst.id, message: `Deleted ${inst.name}; its VMs are being removed` };
    },
  );

  app.post(
    '/api/instances/:id/commit',
    {
      schema: {
        summary: "Commit the disk of this node's replica of your instance as a new revision for every replica",
        params: InstanceParams,
      },
    },
    async (req): Promise<CommitResultInfo> => {
      const { s, key } = manager(req);
      const inst = ownInstance(await apis.instances(), req.params.id, s.address);
      const vm = (await apis.vms()).find((v) => v.name === vmNameFor(inst));
      if (!vm) {
        throw new FormError('VM_NOT_FOUND', `Cannot commit ${inst.name}: no replica of it runs on this node`, {
          hint: 'Commit on the node that runs the replica you changed.',
        });
      }
      const vmm = new ApiClient(opts.urls.vmm, key, 600_000);
      const r = await vmm.post<{ sha256: string; bytes: number; frozenMs: number }>(`/vms/${vm.id}/commit`, {});
      const revision = inst.revision + 1;
      await stateClient.author(key, 'instance.commit', { instanceId: inst.id, revision, hash: r.sha256 });
      log.info({ address: s.address, instance: inst.id, revision }, 'dashboard: commit');
      return { instance: inst.id, revision, sha256: r.sha256, bytes: r.bytes, frozenMs: r.frozenMs };
    },
  );

  app.get(
    '/api/instances/:id/disk',
    {
      schema: {
        summary: "Lock state of the encrypted data disk of this node's replica of your instance",
        params: InstanceParams,
      },
    },
    async (req): Promise<DiskInfo> => {
      const s = session(req);
      const inst = ownInstance(await apis.instances(), req.params.id, s.address);
      const vmName = vmNameFor(inst);
      if (!(await apis.vms()).some((v) => v.name === vmName)) {
        return { state: 'unknown', detail: 'no replica of it runs on this node' };
      }
      if (!s.key) return { state: 'unknown', detail: 'a read-only session cannot ask the node (it signs nothing)' };
      const vmm = new ApiClient(opts.urls.vmm, s.key, 15_000);
      const d = await vmm.post<{ state: DiskInfo['state']; luks?: string; mount?: string; error?: string }>(
        `/attest/vms/${encodeURIComponent(vmName)}/disk`,
        {},
      );
      const detail =
        d.state === 'unlocked'
          ? `mounted at ${d.mount ?? '/data'}`
          : d.state === 'locked'
            ? d.luks === 'no'
              ? 'blank: formatted at the first unlock'
              : 'encrypted, not opened since the replica booted'
            : d.state === 'absent'
              ? 'this replica has no data disk'
              : (d.error ?? 'unknown');
      return { state: d.state, detail };
    },
  );

  app.post(
    '/api/formpacks/:id/ship',
    {
      schema: {
        summary: 'Ship one of your Formpacks built on this node: publish it and create (or update) its instance',
        params: Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
        body: Type.Object(
          { replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 16 })), new: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
      },
    },
    async (req): Promise<ShipResultInfo> => {
      const { s, key } = manager(req);
      let manifest: FormpackManifest;
      try {
        manifest = await apis.manifest(req.params.id);
      } catch (err) {
        if ((err as FormError).status !== 404) throw err;
        throw new FormError('PACK_NOT_FOUND', `Cannot ship ${req.params.id.slice(0, 12)}: this node does not have it`, {
          hint: 'Build it here first (Formpacks → Build), or ship it from the machine that built it with `form pack ship`.',
        });
      }
      if (manifest.owner !== s.address) {
        throw new FormError('PACK_NOT_FOUND', `You have no Formpack ${req.params.id.slice(0, 12)}`, {
          hint: 'The Formpacks page lists yours.',
        });
      }
      const r = await shipFormpack(stateClient, key, manifest, { replicas: req.body.replicas, new: req.body.new });
      log.info({ address: s.address, instance: r.id, formpack: manifest.id }, 'dashboard: ship');
      return r;
    },
  );

  const maxUpload = opts.maxUploadBytes ?? 256 * 2 ** 20;
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
      },
    },
    async (req, reply): Promise<BuildStarted> => {
      const { s, key } = manager(req);
      const type = String(req.headers['content-type'] ?? '')
        .split(';')[0]
        ?.trim();
      const body = req.body;
      if (!(body instanceof Buffer) || (type !== 'application/x-tar' && type !== 'application/gzip')) {
        throw new FormError('PACK_BAD_ARCHIVE', 'Cannot build: send the build context as a tar or tar.gz archive', {
          hint: 'Pick the directory holding your Formfile, or a .tar / .tar.gz of it.',
        });
      }
      const pack = new PackClient(opts.urls.pack, key);
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
      },
    },
    async (req, reply) => {
      const s = session(req);
      const pack = new PackClient(opts.urls.pack);
      const info = await pack.status(req.params.buildId);
      if (info.owner !== s.address) {
        throw new FormError('NOT_FOUND', `You have no build ${req.params.buildId}`);
      }
      const res = await fetch(`${opts.urls.pack.replace(/\/+$/, '')}/builds/${req.params.buildId}/log`);
      if (!res.ok || !res.body) throw new FormError('UNAVAILABLE', `Cannot follow build ${req.params.buildId}`);
      reply.header('x-accel-buffering', 'no');
      return reply
        .type('application/x-ndjson')
        .send(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream));
    },
  );

  // The front end: files from the build, and index.html for the app's own routes.
  const sendStatic = async (req: FastifyRequest, reply: FastifyReply) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/api/')) {
      throw new FormError('NOT_FOUND', `No route ${req.method} ${url.pathname}`);
    }
    const rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.(\/|\\|$))+/, '');
    let file = join(staticDir, rel);
    if (!file.startsWith(staticDir + sep) || !existsSync(file) || !statSync(file).isFile()) {
      file = join(staticDir, 'index.html');
    }
    if (!existsSync(file)) {
      return reply
        .status(503)
        .type('text/plain; charset=utf-8')
        .send('The dashboard front end is not built. Run: npm run build -w @formation/web\n');
    }
    const type = MIME[extname(file)] ?? 'application/octet-stream';
    if (file.includes(`${sep}assets${sep}`)) reply.header('cache-control', 'public, max-age=31536000, immutable');
    return reply.type(type).send(readFileSync(file));
  };
  app.get('/', { schema: { hide: true } }, sendStatic);
  app.get('/*', { schema: { hide: true } }, sendStatic);

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

async function localFormpacks(apis: NodeApis, log: Logger) {
  try {
    return await apis.localFormpacks();
  } catch (err) {
    log.warn({ err }, 'pack API unavailable: listing published Formpacks only');
    return [];
  }
}

interface InstanceContext {
  instances: InstanceView[];
  nodes: NodeView[];
  dnsOf: Map<string, string>;
  selfNode: string | null;
}

async function instanceContext(apis: NodeApis): Promise<InstanceContext> {
  const [instances, nodes, dns, self] = await Promise.all([
    apis.instances(),
    apis.nodes(),
    apis.dns(),
    apis.self().catch(() => null),
  ]);
  const byInstance = new Map<string, string[]>();
  for (const d of dns) {
    if (!d.instanceId) continue;
    byInstance.set(d.instanceId, [...(byInstance.get(d.instanceId) ?? []), d.name]);
  }
  const dnsOf = new Map<string, string>();
  for (const i of instances) {
    const names = byInstance.get(i.id) ?? [];
    // The short <name>.<domain> when this owner holds it, else the owner-qualified <name>.<address>.<domain>.
    const name = names.filter((n) => n.startsWith(`${i.name}.`)).sort((a, b) => a.length - b.length)[0] ?? names[0];
    if (name) dnsOf.set(i.id, name);
  }
  const selfNode = self ? (nodes.find((n) => n.address === self.node)?.id ?? null) : null;
  return { instances, nodes, dnsOf, selfNode };
}

function ownInstance(instances: InstanceView[], ref: string, address: Address): InstanceView {
  const inst = instances.find((i) => !i.deleted && i.ownerAddress === address && (i.id === ref || i.name === ref));
  // Someone else's instance is "not found" too: the dashboard does not reveal what others run.
  if (!inst) {
    throw new FormError('INSTANCE_NOT_FOUND', `You have no instance ${ref}`, {
      hint: 'The Instances page lists yours.',
    });
  }
  return inst;
}

function health(state: string | null): ReplicaInfo['health'] {
  switch (state) {
    case 'running':
      return 'healthy';
    case 'failed':
      return 'failed';
    case 'stopped':
    case 'deleted':
      return 'stopped';
    case null:
    case 'claimed':
    case 'pending':
    case 'starting':
      return 'starting';
    default:
      return 'unknown';
  }
}

function instanceInfo(i: InstanceView, ctx: InstanceContext): InstanceInfo {
  // the same placement input the nodes place by (a recent heartbeat, not draining; this node counts)
  const s = deploymentStatus(
    i,
    placementNodesFrom(
      ctx.nodes,
      Date.now(),
      Number(process.env.FORM_NODE_TIMEOUT_MS) || 30_000,
      ctx.selfNode ?? undefined,
    ),
  );
  const dnsName = ctx.dnsOf.get(i.id) ?? null;
  return {
    id: i.id,
    name: i.name,
    status: s.status,
    reason: s.reason ?? null,
    running: s.running,
    wanted: s.wanted,
    desired: i.desired,
    formpackId: i.formpackId,
    replicas: i.replicas,
    resources: i.resources,
    revision: i.revision,
    dnsName,
    replicaSet: i.replicaSet.map((r) => {
      const node = ctx.nodes.find((n) => n.id === r.node);
      return {
        node: r.node,
        nodeAddress: node?.address ?? r.node,
        nodeName: node?.name ?? null,
        state: r.state ?? 'claimed',
        health: health(r.state),
        assigned: r.assigned,
        formnetIp: r.formnetIp,
        dnsName,
        revision: r.revision,
        reason: r.reason,
        updatedAt: r.ts,
        local: ctx.selfNode === r.node,
        vmName: vmNameFor(i),
      };
    }),
  };
}

type Resources = { vcpu: number; memMiB: number; diskGiB: number };

/** Resources of the replicas each node runs or is starting (from state: every node's view, not only ours). */
function usedByNode(instances: InstanceView[]): Map<string, Resources> {
  const used = new Map<string, Resources>();
  for (const i of instances) {
    if (i.deleted) continue;
    for (const r of i.replicaSet) {
      if (r.state !== 'running' && r.state !== 'starting') continue;
      const u = used.get(r.node) ?? { vcpu: 0, memMiB: 0, diskGiB: 0 };
      used.set(r.node, {
        vcpu: u.vcpu + i.resources.vcpu,
        memMiB: u.memMiB + i.resources.memMiB,
        diskGiB: u.diskGiB + i.resources.diskGiB,
      });
    }
  }
  return used;
}

function nodeSummary(n: NodeView, selfAddress: string | undefined, used: Resources | undefined): NodeSummary {
  return {
    id: n.id,
    address: n.address,
    name: n.name,
    endpoint: n.endpoint,
    formnetRange: n.formnetRange,
    capacity: n.capacity,
    used: n.heartbeat?.used ?? used ?? { vcpu: 0, memMiB: 0, diskGiB: 0 },
    status: n.heartbeat?.status ?? null,
    lastHeartbeat: n.heartbeat?.ts ?? null,
    self: n.address === selfAddress,
  };
}
type NodeSummary = NetworkInfo['nodes'][number];

function addressOfKey(publicKey: string, nodes: NodeView[]): string {
  const n = nodes.find((x) => x.id === publicKey);
  if (n) return n.address;
  try {
    return deriveAddress(publicKey);
  } catch {
    return publicKey.slice(0, 42);
  }
}

/** Load samples per node, taken by the BFF on a timer so the plots have history when a page opens. */
class Metrics {
  private readonly apis: NodeApis;
  private readonly max: number;
  private readonly series = new Map<string, MetricSample[]>();

  constructor(apis: NodeApis, max: number) {
    this.apis = apis;
    this.max = max;
  }

  async sample(now = Date.now()): Promise<void> {
    const [nodes, self, instances] = await Promise.all([
      this.apis.nodes(),
      this.apis.self().catch(() => null),
      this.apis.instances(),
    ]);
    const usedBy = usedByNode(instances);
    for (const n of nodes) {
      const used = n.heartbeat?.used ?? usedBy.get(n.id);
      const local = self !== null && n.address === self.node;
      const s: MetricSample = {
        ts: now,
        node: n.id,
        cpuAllocated: used && n.capacity.vcpu > 0 ? Math.min(1, used.vcpu / n.capacity.vcpu) : 0,
        memAllocated: used && n.capacity.memMiB > 0 ? Math.min(1, used.memMiB / n.capacity.memMiB) : 0,
        hostCpu: local ? Math.min(1, (loadavg()[0] ?? 0) / Math.max(1, cpus().length)) : null,
        hostMem: local ? 1 - freemem() / totalmem() : null,
      };
      const list = this.series.get(n.id) ?? [];
      list.push(s);
      if (list.length > this.max) list.splice(0, list.length - this.max);
      this.series.set(n.id, list);
    }
  }

  all(): MetricSample[] {
    return [...this.series.values()].flat();
  }
}

/** `sha256:<digest>` an instance of `m` must attest to, or null when the manifest lacks what it needs. */
function measurementOf(m: FormpackManifest): string | null {
  try {
    return `sha256:${expectedMeasurement(m).digest}`;
  } catch {
    return null;
  }
}
