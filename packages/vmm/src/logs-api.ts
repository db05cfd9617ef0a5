import { FormError } from '@formation/interface';
import type { ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import type { LogCollector } from './log-collector.ts';
import type { LogEntry, LogStore } from './log-store.ts';
import type { VmView } from './types.ts';

export interface VmLogs {
  store: LogStore;
  collector: LogCollector;
}

const Entry = Type.Object({
  seq: Type.Integer(),
  t: Type.Integer(),
  stream: Type.String(),
  src: Type.String(),
  line: Type.String(),
});

/** `since`: epoch milliseconds or an ISO time (the CLI turns `10m` into one). */
export function parseLogSince(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  if (/^\d{1,16}$/.test(text)) return Number(text);
  const t = /^\d{4}-\d\d-\d\d/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(t)) {
    throw new FormError('BAD_REQUEST', `Cannot read logs since "${text}": not a time`, {
      hint: 'Give epoch milliseconds or an ISO time, e.g. 2026-01-01T10:00:00Z.',
    });
  }
  return t;
}

/**
 * `GET /vms/:id/logs?since=&after=&limit=&follow=`: the VM's stored log lines (entrypoint output and
 * the guest's service logs, read over the guest agent), oldest first. A signed read like the console:
 * the VM's owner or the node's key, anyone else gets the 404 of a VM that does not exist.
 * `follow=true` is a long poll: with nothing newer than `after`, it waits (up to `waitMs`, default
 * 20 s) for the next lines; call again with the last `seq` as `after`.
 */
export function registerLogRoutes(
  app: ApiServer,
  logs: VmLogs,
  auth: {
    reader: ReturnType<typeof requireSigner>;
    readable: (req: { signer?: { publicKey: string; address: string } }, id: string) => VmView;
  },
): void {
  app.get(
    '/vms/:id/logs',
    {
      preHandler: auth.reader,
      schema: {
        tags: ['vmm'],
        summary: "The VM's log lines (entrypoint and guest services); its owner or the node only",
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }),
        querystring: Type.Object({
          since: Type.Optional(Type.String({ maxLength: 40 })),
          after: Type.Optional(Type.Integer({ minimum: 0 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
          follow: Type.Optional(Type.Boolean()),
          waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
        }),
        response: {
          200: Type.Object({
            id: Type.String(),
            name: Type.String(),
            state: Type.String(),
            entries: Type.Array(Entry),
            lastSeq: Type.Integer(),
          }),
        },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const vm = auth.readable(req, id);
      const q = req.query as { since?: string; after?: number; limit?: number; follow?: boolean; waitMs?: number };
      const since = parseLogSince(q.since);
      const query = {
        ...(since !== undefined ? { since } : {}),
        ...(q.after !== undefined ? { afterSeq: q.after } : {}),
        limit: q.limit ?? 10_000,
      };
      // Fresh lines first, so what the app just printed is there (a failed read leaves the stored ones).
      await logs.collector.collectVm(vm).catch(() => undefined);
      let entries = logs.store.read(id, query);
      if (entries.length === 0 && q.follow) {
        entries = await new Promise<LogEntry[]>((resolve) => {
          const done = (e: LogEntry[]): void => {
            clearTimeout(timer);
            off();
            resolve(e);
          };
          // The appended lines themselves: a waiting follower does not re-read the whole store per batch.
          const off = logs.store.subscribe(id, (added) =>
            done(
              added.filter((e) => (since === undefined || e.t >= since) && (q.after === undefined || e.seq > q.after)),
            ),
          );
          const timer = setTimeout(() => done([]), q.waitMs ?? 20_000);
          req.raw.once('close', () => done([]));
        });
      }
      const lastSeq = entries.at(-1)?.seq ?? q.after ?? 0;
      return { id, name: vm.name, state: vm.state, entries, lastSeq };
    },
  );
}
