import type { NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { verifyDataItem } from './ans104.ts';
import {
  AcceptedItemSchema,
  AoResultSchema,
  AoResultsSchema,
  GraphqlAnswerSchema,
  RuntimeErrors,
  SchedulerSchema,
} from './api-schemas.ts';
import { answerTransactions, type KnownTransaction, parseTransactionsQuery } from './graphql.ts';
import type { ProcessManager } from './manager.ts';
import type { Result, RuntimeModule } from './types.ts';

/** An AO data item as our AO endpoints take it (JSON; see README for what is and is not covered). */
export interface AoDataItem {
  Id?: string;
  Target?: string;
  Owner?: string;
  Tags: Array<{ name: string; value: string }>;
  Data?: string;
}

/** An AO compute-unit result. */
export interface AoResult {
  Messages: Array<{ Target: string; Data: string; Tags: Array<{ name: string; value: string }> }>;
  Spawns: Array<{ Data: string; Tags: Array<{ name: string; value: string }> }>;
  Output: string | { data: string };
  Error?: string;
  GasUsed: number;
}

const tagsToList = (t: Record<string, string>) => Object.entries(t).map(([name, value]) => ({ name, value }));

export function toAoResult(r: Result | null): AoResult {
  const out: AoResult = {
    Messages: (r?.messages ?? []).map((m) => ({ Target: m.target, Data: m.data, Tags: tagsToList(m.tags) })),
    Spawns: (r?.spawns ?? []).map((s) => ({
      Data: s.data,
      Tags: [{ name: 'Module', value: s.module }, ...tagsToList(s.tags)],
    })),
    Output: { data: [r?.output, r?.data].filter((x) => x).join('\n') },
    GasUsed: 0,
  };
  if (r?.error) out.Error = r.error;
  return out;
}

const DataItem = Type.Object(
  {
    Id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
    Target: Type.Optional(Type.String()),
    Owner: Type.Optional(Type.String()),
    Anchor: Type.Optional(Type.String()),
    Tags: Type.Array(Type.Object({ name: Type.String(), value: Type.String() }), { maxItems: 128 }),
    Data: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);

/**
 * A module's tags as a gateway would show its module transaction: its own tags, plus the ones
 * aoconnect's `spawn` checks (Data-Protocol, Type, Module-Format, Input-/Output-Encoding) when missing.
 */
export function moduleTransactionTags(mod: RuntimeModule): Array<{ name: string; value: string }> {
  const tags = [...mod.tags];
  const defaults: Array<[string, string]> = [
    ['Data-Protocol', 'ao'],
    ['Variant', 'ao.TN.1'],
    ['Type', 'Module'],
    ['Module-Format', mod.moduleFormat],
    ['Input-Encoding', 'JSON-1'],
    ['Output-Encoding', 'JSON-1'],
  ];
  for (const [name, value] of defaults) if (!tags.some((t) => t.name === name)) tags.push({ name, value });
  return tags;
}

function tag(item: AoDataItem, name: string): string | undefined {
  return item.Tags.find((t) => t.name === name)?.value;
}

/**
 * AO-style endpoints (seed 004 "Run AOS Client": cu-url = mu-url = this node, scheduler = node id):
 * MU `POST /` takes a data item — ANS-104 binary (Ethereum signature, type 3) or JSON signed with
 * Formation's request signature; either way the signer is the Owner — (Type=Process spawns from the Module tag, Type=Message applies it),
 * CU `GET /result/:id?process-id=` and `GET /results/:pid`, `POST /dry-run?process-id=`, and SU
 * `GET /` naming the scheduler.
 */
export function registerAoRoutes(
  app: ApiServer,
  deps: { manager: ProcessManager; nonces: NonceCache; node: { id: string; name: string; url: string } },
): void {
  const { manager } = deps;
  app.get('/', { schema: { response: { 200: SchedulerSchema } } }, async () => ({
    Name: deps.node.name,
    Unit: 'Scheduler',
    Address: deps.node.id,
    Processes: manager.listProcesses().map((p) => p.id),
  }));

  // ANS-104 binary data items (what AO clients post to a MU); JSON items use the request signature
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer', bodyLimit: 16 * 1024 * 1024 },
    (_req, body, done) => done(null, body),
  );
  const jsonSigner = requireSigner(deps.nonces);
  app.post(
    '/',
    {
      preHandler: async (req) => {
        if (!Buffer.isBuffer(req.body)) await jsonSigner(req);
      },
      schema: { response: { 202: AcceptedItemSchema, ...RuntimeErrors } },
    },
    async (req, reply) => {
      let item: AoDataItem;
      let owner: string;
      if (Buffer.isBuffer(req.body)) {
        const d = verifyDataItem(req.body);
        owner = d.ownerAddress;
        item = {
          Id: d.id,
          Owner: owner,
          Tags: d.tags,
          Data: d.data.toString('utf8'),
          ...(d.target ? { Target: d.target } : {}),
        };
      } else {
        if (!Value.Check(DataItem, req.body)) {
          const first = [...Value.Errors(DataItem, req.body)][0];
          throw new FormError(
            'BAD_REQUEST',
            `Cannot accept data item: ${first?.path || '/'} ${first?.message ?? 'is invalid'}`,
          );
        }
        item = req.body as AoDataItem;
        // the data item's owner is whoever signed the request; a different claimed Owner is refused
        owner = req.signer?.address ?? '';
        if (item.Owner && item.Owner.toLowerCase() !== owner.toLowerCase())
          throw new FormError(
            'AUTH_FORBIDDEN',
            `Cannot accept data item: Owner ${item.Owner} is not the signer ${owner}`,
          );
      }
      const type = tag(item, 'Type') ?? (item.Target ? 'Message' : undefined);
      if (type === 'Process') {
        const module = tag(item, 'Module');
        if (!module) throw new FormError('BAD_REQUEST', 'Cannot spawn: the data item has no Module tag');
        const sched = tag(item, 'Scheduler');
        if (sched && sched.toLowerCase() !== deps.node.id.toLowerCase())
          throw new FormError('BAD_REQUEST', `Cannot spawn: Scheduler ${sched} is not this node (${deps.node.id})`);
        const p = await manager.spawn({
          module,
          owner,
          data: item.Data ?? '',
          tags: item.Tags,
          ...(item.Id ? { id: item.Id } : {}),
        });
        return reply.status(202).send({ id: p.id, message: 'Processing DataItem' });
      }
      if (type === 'Message') {
        if (!item.Target) throw new FormError('BAD_REQUEST', 'Cannot send: the data item has no Target');
        const action = tag(item, 'Action');
        if (!action) throw new FormError('BAD_REQUEST', 'Cannot send: the data item has no Action tag');
        const params: Record<string, string> = {};
        for (const t of item.Tags)
          if (!['Action', 'Type', 'Data-Protocol', 'Variant'].includes(t.name)) params[t.name] = t.value;
        const out = await manager.send(item.Target, {
          from: owner,
          action,
          data: item.Data ?? '',
          params,
          ...(item.Id ? { itemId: item.Id } : {}),
        });
        return reply.status(202).send({ id: out.itemId, message: 'Processing DataItem' });
      }
      throw new FormError(
        'BAD_REQUEST',
        `Cannot handle data item: Type must be Process or Message (got ${JSON.stringify(type ?? null)})`,
      );
    },
  );

  // the gateway lookups AO clients make (aoconnect's spawn checks the module; aos finds a process by
  // Name and owner), answered from what this node holds: its processes, its modules, itself
  app.post(
    '/graphql',
    {
      schema: {
        body: Type.Object(
          {
            query: Type.String({ maxLength: 20_000 }),
            variables: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
          },
          { additionalProperties: true },
        ),
        response: { 200: GraphqlAnswerSchema, 400: ErrorBodySchema },
      },
    },
    async (req) => {
      const q = parseTransactionsQuery(req.body.query, req.body.variables ?? {});
      const known: KnownTransaction[] = [
        ...manager.listProcesses().map((p) => ({
          id: p.id,
          owner: p.owner,
          tags: p.tags,
          timestamp: Date.parse(p.createdAt),
        })),
        ...manager.listModules().map((m) => ({ id: m.id, owner: deps.node.id, tags: moduleTransactionTags(m) })),
        {
          id: deps.node.id,
          owner: deps.node.id,
          tags: [
            { name: 'Data-Protocol', value: 'ao' },
            { name: 'Type', value: 'Scheduler-Location' },
            { name: 'Url', value: deps.node.url },
            { name: 'Time-To-Live', value: '3600000' },
          ],
        },
      ];
      return answerTransactions(q, known);
    },
  );

  app.get(
    '/result/:id',
    {
      schema: {
        params: Type.Object({ id: Type.String() }),
        querystring: Type.Object({ 'process-id': Type.String({ minLength: 1 }) }),
        response: { 200: AoResultSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => toAoResult((await manager.result(req.query['process-id'], req.params.id)).result),
  );

  app.get(
    '/results/:pid',
    {
      schema: {
        params: Type.Object({ pid: Type.String() }),
        querystring: Type.Object({
          from: Type.Optional(Type.Integer({ minimum: 1 })),
          to: Type.Optional(Type.Integer({ minimum: 1 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          sort: Type.Optional(Type.Union([Type.Literal('ASC'), Type.Literal('DESC')])),
        }),
        response: { 200: AoResultsSchema, 404: ErrorBodySchema },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 25;
      let list: Awaited<ReturnType<ProcessManager['results']>>;
      if (req.query.sort === 'DESC') {
        // newest first, below the `to` cursor (aos's live view asks for the latest this way)
        const last = Math.min(manager.process(req.params.pid).lastSequence, (req.query.to ?? Infinity) - 1);
        const first = Math.max(req.query.from ?? 1, last - limit + 1);
        list = last >= first ? (await manager.results(req.params.pid, first, last - first + 1)).reverse() : [];
      } else {
        const from = req.query.from ?? 1;
        const to = req.query.to ? Math.min(req.query.to - 1, from + limit - 1) : from + limit - 1;
        list = to >= from ? await manager.results(req.params.pid, from, to - from + 1) : [];
      }
      return {
        edges: list.map((r) => ({ cursor: String(r.sequence), node: { Id: r.itemId, ...toAoResult(r.result) } })),
      };
    },
  );

  app.post(
    '/dry-run',
    {
      schema: {
        querystring: Type.Object({ 'process-id': Type.String({ minLength: 1 }) }),
        body: DataItem,
        response: { 200: AoResultSchema, ...RuntimeErrors },
      },
    },
    async (req) => {
      const item = req.body as AoDataItem;
      const action = tag(item, 'Action');
      if (!action) throw new FormError('BAD_REQUEST', 'Cannot dry-run: the data item has no Action tag');
      // dry runs are unsigned (as in AO), so the claimed Owner is not proven: no Eval
      if (action === 'Eval') throw new FormError('AUTH_FORBIDDEN', 'Cannot dry-run Eval: send it as a signed message');
      const params: Record<string, string> = {};
      for (const t of item.Tags) if (t.name !== 'Action') params[t.name] = t.value;
      const out = await manager.send(req.query['process-id'], {
        from: item.Owner ?? '',
        action,
        data: item.Data ?? '',
        params,
        mode: 'dry-run',
      });
      return toAoResult(out.result);
    },
  );
}
