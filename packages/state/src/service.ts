import type {} from '@fastify/swagger';
import { DEFAULT_PORTS, FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, createApiServer, type Logger } from '@formation/service';
import { type TSchema, Type } from '@sinclair/typebox';
import { registerEventRoutes } from './events-route.ts';
import { MAX_OP_BYTES } from './op.ts';
import type { ApplyResult, StateStore } from './store.ts';
import { ApplyResultSchema, InstanceViewSchema, OpSchema, VIEW_SCHEMAS } from './view-schemas.ts';

export interface StateServiceOptions {
  store: StateStore;
  logger: Logger;
  /** Most ops in one POST /ops/batch (each costs a signature check). Default 1000. */
  maxBatch?: number;
  /**
   * Ops (signature checks) each remote address may submit: a token bucket of `burst` ops refilled at
   * `opsPerSecond`. Default 500/s, burst 5000. Over it: 429 RATE_LIMITED.
   */
  rateLimit?: { opsPerSecond: number; burst: number };
  /** A replica's node silent this long counts as lost in an instance's events (ms); default 30 s. */
  nodeTimeoutMs?: number;
}

/** A token bucket per remote address; forgets idle addresses so a flood of sources stays bounded. */
class OpBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly rate: number;
  private readonly burst: number;
  constructor(rate: number, burst: number) {
    this.rate = rate;
    this.burst = burst;
  }

  /** Take `n` tokens for `who`, or throw RATE_LIMITED. */
  take(who: string, n: number, now = Date.now()): void {
    let b = this.buckets.get(who);
    if (!b) {
      if (this.buckets.size >= 10_000) {
        for (const [k, v] of this.buckets)
          if (v.tokens + ((now - v.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
        if (this.buckets.size >= 10_000) this.buckets.delete(this.buckets.keys().next().value as string);
      }
      b = { tokens: this.burst, at: now };
      this.buckets.set(who, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
    b.at = now;
    if (b.tokens < n) {
      const wait = Math.ceil(((n - b.tokens) / this.rate) * 1000);
      throw new FormError(
        'RATE_LIMITED',
        `Cannot accept ${n} ops from ${who} now: over ${this.rate} ops/s (burst ${this.burst})`,
        {
          hint: `Retry in ${wait} ms, or send fewer ops per request.`,
          details: { retryAfterMs: wait },
        },
      );
    }
    b.tokens -= n;
  }
}

/** Default port of the state API. */
export const STATE_PORT = DEFAULT_PORTS.state;

const Hash = Type.String({ pattern: '^[0-9a-f]{64}$' });
const OpLike = Type.Unsafe<unknown>({ ...OpSchema });

/**
 * The state API (port 3004). Submitting an op needs no request signature: the op's own signature
 * authenticates it (401 AUTH_BAD_SIGNATURE), its body is checked (422 STATE_OP_INVALID) and its author
 * authorized (403 STATE_OP_FORBIDDEN). Reads are open.
 */
export async function createStateService(opts: StateServiceOptions): Promise<ApiServer> {
  const { store } = opts;
  const maxBatch = opts.maxBatch ?? 1000;
  const budget = new OpBudget(opts.rateLimit?.opsPerSecond ?? 500, opts.rateLimit?.burst ?? 5000);
  const app = await createApiServer({
    name: 'state',
    description: 'Formation replicated state: a signed op log (BFT-CRDT) and its views.',
    logger: opts.logger,
    bodyLimit: 8 * 1024 * 1024,
  });

  app.post(
    '/ops',
    {
      schema: {
        summary: 'Submit one signed op',
        body: OpLike,
        response: {
          200: Type.Object({ status: Type.String(), hash: Type.String(), missing: Type.Optional(Type.Array(Hash)) }),
          201: Type.Object({ status: Type.String(), hash: Type.String() }),
          202: Type.Object({ status: Type.String(), hash: Type.String(), missing: Type.Optional(Type.Array(Hash)) }),
        },
      },
      bodyLimit: MAX_OP_BYTES * 4,
      attachValidation: true,
    },
    async (req, reply) => {
      if (req.validationError) {
        throw new FormError('STATE_OP_INVALID', `Cannot accept op: ${req.validationError.message}`);
      }
      refuseStaleDelegatedOp(req.body as { ts?: unknown; body?: { onBehalfOf?: unknown } });
      budget.take(req.ip, 1);
      const problem = store.apiProblem(req.body);
      if (problem) throw problem;
      const r = store.submit(req.body);
      return reply.status(r.status === 'accepted' ? 201 : r.status === 'pending' ? 202 : 200).send(r);
    },
  );

  app.post(
    '/ops/batch',
    {
      schema: {
        summary: 'Apply many ops (any order, duplicates fine); returns accepted / rejected / pending',
        // items are checked one by one by the store, so one bad op does not refuse the batch
        body: Type.Object({
          ops: Type.Array(Type.Unknown({ description: 'a signed op (see POST /ops)' }), { maxItems: 10_000 }),
        }),
        response: { 200: ApplyResultSchema, 400: ErrorBodySchema, 422: ErrorBodySchema, 429: ErrorBodySchema },
      },
    },
    async (req) => {
      const ops = (req.body as { ops: unknown[] }).ops;
      if (ops.length > maxBatch) {
        throw new FormError(
          'STATE_OP_INVALID',
          `Cannot apply a batch of ${ops.length} ops: at most ${maxBatch} per request`,
          {
            hint: 'Split it into several requests.',
          },
        );
      }
      budget.take(req.ip, ops.length);
      // Ops the API would refuse one by one are refused here too (the rest of the batch goes on).
      const refused: ApplyResult['rejected'] = [];
      const rest = ops.filter((op) => {
        const p = store.apiProblem(op);
        if (p)
          refused.push({
            hash: String((op as { hash?: unknown }).hash ?? ''),
            code: p.code === 'STATE_OP_FORBIDDEN' ? 'STATE_OP_FORBIDDEN' : 'STATE_OP_INVALID',
            reason: p.message,
          });
        return !p;
      });
      const r = store.applyBatch(rest);
      return refused.length ? { ...r, rejected: [...refused, ...r.rejected] } : r;
    },
  );

  app.get(
    '/ops/:hash',
    {
      schema: {
        summary: 'An accepted op',
        params: Type.Object({ hash: Type.String() }),
        response: { 200: OpSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => {
      const op = store.getOp(req.params.hash);
      if (!op) throw new FormError('STATE_OP_NOT_FOUND', `Cannot find op ${req.params.hash}: not accepted here`);
      return op;
    },
  );

  const HeadsSchema = Type.Object({ heads: Type.Array(Hash), size: Type.Integer() });
  app.get(
    '/heads',
    { schema: { summary: 'Current heads (use as deps of a new op)', response: { 200: HeadsSchema } } },
    async () => ({
      heads: store.heads(),
      size: store.size,
    }),
  );

  const DigestSchema = Type.Object({ digest: Type.String(), size: Type.Integer(), pending: Type.Integer() });
  app.get(
    '/digest',
    { schema: { summary: 'sha256 of the canonical views', response: { 200: DigestSchema } } },
    async () => ({
      digest: store.digest(),
      size: store.size,
      pending: store.pendingStats().ops,
    }),
  );

  app.post(
    '/sync',
    {
      schema: {
        summary: 'Give your heads, get the ops you lack (topological order) and our heads',
        body: Type.Object({
          heads: Type.Array(Hash, { maxItems: 10_000 }),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
        }),
        response: {
          200: Type.Object({ ops: Type.Array(OpSchema), heads: Type.Array(Hash), more: Type.Boolean() }),
          400: ErrorBodySchema,
        },
      },
    },
    async (req) => {
      const { heads, limit } = req.body as { heads: string[]; limit?: number };
      const ops = store.opsSince(heads, limit ?? 1000);
      return { ops, heads: store.heads(), more: ops.length === (limit ?? 1000) };
    },
  );

  const view = <K extends keyof ReturnType<StateStore['views']>>(path: string, key: K, summary: string) =>
    app.get(
      path,
      { schema: { summary, response: { 200: VIEW_SCHEMAS[key] as TSchema } } },
      async () => store.views()[key],
    );
  view('/network', 'network', 'The network: genesis, admission policy, admins, quotas, nodes awaiting admission');
  view('/conflicts', 'conflicts', 'Slices, WireGuard keys, names and addresses two parties hold (each loses them)');
  view('/nodes', 'nodes', 'Admitted nodes');
  view('/accounts', 'accounts', 'Every author seen, with optional names');
  view('/instances', 'instances', 'Instances with replicas and revisions');
  view('/formpacks', 'formpacks', 'Published Formpacks');
  view('/formnet/peers', 'formnetPeers', 'Formnet (WireGuard) peers');
  view('/formnet/allocations', 'allocations', 'Formnet address allocations');
  view('/dns', 'dns', 'DNS records (derived from instances, and explicit)');
  view('/dns/domains', 'domains', 'Custom domains: claims, verifications, who holds each name');
  view('/ports', 'ports', 'Public TCP port claims: grants, who holds each port');

  app.get(
    '/instances/:id',
    {
      schema: {
        summary: 'One instance',
        params: Type.Object({ id: Type.String() }),
        response: { 200: InstanceViewSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => {
      const i = store.views().instances.find((x) => x.id === req.params.id);
      if (!i) throw new FormError('INSTANCE_NOT_FOUND', `Cannot find instance ${req.params.id}`);
      return i;
    },
  );
  registerEventRoutes(app, store, opts.nodeTimeoutMs === undefined ? {} : { nodeTimeoutMs: opts.nodeTimeoutMs });

  return app;
}

/**
 * Open the API on `port` (default 3004) and `host` (default 127.0.0.1); returns the app and its URL.
 *
 * @example const { url, app } = await startStateService({ store, logger }); // … await app.close();
 */
export async function startStateService(
  opts: StateServiceOptions & { port?: number; host?: string },
): Promise<{ app: ApiServer; url: string }> {
  const app = await createStateService(opts);
  const url = await app.listen({ port: opts.port ?? STATE_PORT, host: opts.host ?? '127.0.0.1' });
  return { app, url };
}

/** How far from this node's clock a delegated op submitted here may be dated. */
export const DELEGATED_OP_MAX_SKEW_MS = 5 * 60_000;

/**
 * A delegated op (a dashboard session acting for a developer) submitted to this API must be dated
 * near now: validation judges a delegation against the op's own ts, so without this a leaked session
 * key could back-date ops to before its delegation expired. (Ops arriving by gossip are judged by the
 * rule alone; the honest node that held the session key never signs stale ones.)
 */
function refuseStaleDelegatedOp(op: { ts?: unknown; body?: { onBehalfOf?: unknown } }, now = Date.now()): void {
  if (op.body?.onBehalfOf === undefined || typeof op.ts !== 'number') return;
  if (Math.abs(op.ts - now) > DELEGATED_OP_MAX_SKEW_MS) {
    throw new FormError('STATE_OP_FORBIDDEN', 'Cannot accept a delegated op dated more than 5 minutes from now', {
      hint: 'Check the clock of the machine that signed it; dashboard sessions act only in the present.',
    });
  }
}
