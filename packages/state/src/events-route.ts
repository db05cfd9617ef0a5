import { NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { instanceEvents, parseSince } from './events.ts';
import type { StateStore } from './store.ts';
import { InstanceEventSchema } from './view-schemas.ts';
import type { InstanceView } from './views.ts';

export interface EventRouteOptions {
  nonces?: NonceCache;
  /** A replica's node silent this long counts as lost (ms); default 30 s, as placement. */
  nodeTimeoutMs?: number;
}

/**
 * Find the instance(s) a reference names for `signer`: an instance id (32 hex), a Formpack id (64 hex:
 * the signer's instances of that Formpack, as seed 000's `form manage get status <formpack-id>`), or
 * the name (or id prefix) of one of the signer's instances.
 */
export function resolveInstanceRef(
  instances: readonly InstanceView[],
  ref: string,
  ownerAddress?: string,
): InstanceView[] {
  const live = instances.filter((i) => !i.deleted);
  if (/^[0-9a-f]{32}$/.test(ref)) {
    const exact = instances.filter((i) => i.id === ref);
    if (exact.length) return exact;
  }
  const mine = (i: InstanceView) => !ownerAddress || i.ownerAddress.toLowerCase() === ownerAddress.toLowerCase();
  if (/^[0-9a-f]{64}$/.test(ref)) return live.filter((i) => i.formpackId === ref && mine(i));
  return live.filter((i) => mine(i) && (i.name === ref || (ref.length >= 4 && i.id.startsWith(ref))));
}

/**
 * `GET /instances/:id/events?since=10m`: the instance's events (see events.ts). A signed read: the
 * instance's owner (or a dashboard session under its delegation) or an admitted node of the network;
 * anyone else 403. (The op log itself is replicated to every node and served by `/sync`: this keeps
 * casual readers out, it does not make the history secret.)
 */
export function registerEventRoutes(app: ApiServer, store: StateStore, opts: EventRouteOptions = {}): void {
  const signed = requireSigner(opts.nonces ?? new NonceCache(), { allowDelegation: true });
  app.get(
    '/instances/:id/events',
    {
      preHandler: signed,
      schema: {
        summary: "An instance's events (placed, booted, failed, healed, committed, scaled…); its owner or a node",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9-]+$' }) }),
        querystring: Type.Object({ since: Type.Optional(Type.String({ maxLength: 40 })) }),
        response: {
          200: Type.Object({
            instance: Type.Object({ id: Type.String(), name: Type.String(), ownerAddress: Type.String() }),
            events: Type.Array(InstanceEventSchema),
          }),
          400: ErrorBodySchema,
          401: ErrorBodySchema,
          403: ErrorBodySchema,
          404: ErrorBodySchema,
          409: ErrorBodySchema,
        },
      },
    },
    async (req) => {
      const signer = req.signer;
      if (!signer) throw new FormError('AUTH_MISSING', 'Cannot read events: the request is not signed');
      const now = store.now();
      const q = req.query as { since?: string };
      const since = q.since === undefined ? undefined : parseSince(q.since, now);
      if (since === null) {
        throw new FormError('BAD_REQUEST', `Cannot read events since "${q.since}": not a duration or a time`, {
          hint: 'Use 30s, 10m, 2h, 1d, an ISO time or epoch milliseconds.',
        });
      }
      const views = store.views(now);
      const isNode = !signer.delegate && views.nodes.some((n) => n.id === signer.publicKey);
      const ref = (req.params as { id: string }).id;
      const found = resolveInstanceRef(views.instances, ref, isNode ? undefined : signer.address);
      if (found.length === 0) {
        throw new FormError('INSTANCE_NOT_FOUND', `Cannot find instance "${ref}" among yours`, {
          hint: 'List yours with `form manage list`.',
        });
      }
      if (found.length > 1) {
        throw new FormError('CONFLICT', `Cannot tell which instance "${ref}" means: ${found.length} match`, {
          hint: `Use the id: ${found.map((i) => i.id).join(', ')}`,
        });
      }
      const inst = found[0] as InstanceView;
      if (!isNode && inst.ownerAddress.toLowerCase() !== signer.address.toLowerCase()) {
        throw new FormError('AUTH_FORBIDDEN', `Cannot read the events of instance ${inst.id}: it is not yours`, {
          hint: 'Only its owner and the nodes of the network read an instance’s events.',
        });
      }
      const lastSeen: Record<string, number | null> = {};
      for (const n of views.nodes) lastSeen[n.id] = n.heartbeat?.ts ?? null;
      const events = instanceEvents(store.opsSince([], Number.MAX_SAFE_INTEGER), {
        instanceId: inst.id,
        now,
        lastSeen,
        nodeTimeoutMs: opts.nodeTimeoutMs ?? 30_000,
        ...(since !== undefined ? { since } : {}),
      });
      return { instance: { id: inst.id, name: inst.name, ownerAddress: inst.ownerAddress }, events };
    },
  );
}
