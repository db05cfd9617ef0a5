import type { LogsInfo, ReplicaMetricsInfo } from '@formation/interface/web-api';
import type { ApiServer } from '@formation/service';
import type { InstanceView } from '@formation/state';
import { Type } from '@sinclair/typebox';
import { vmHere, type WebContext } from '../context.ts';
import { inertLine } from '../inert.ts';
import { InstanceParams, LogsInfoSchema, ReadErrors, ReplicaMetricsSchema } from '../schemas.ts';

/** At most this many lines per answer (the page keeps the last 1000). */
const MAX_LINES = 500;

/**
 * The instance page's logs stream and metrics: this node's replica of one of the session's instances,
 * read from this node's VMM (the same `GET /vms/:id/logs` and `/vms/:id/metrics` that `form logs` and
 * `form manage get metrics` use). Only the owner's session reaches them (another developer's instance is
 * "not found"); log lines are made inert (`inertLine`).
 */
export function registerTelemetryRoutes(app: ApiServer, ctx: WebContext): void {
  const { apis, session } = ctx;
  const localVm = async (
    id: string,
    address: string,
  ): Promise<{ inst: InstanceView; vmId: string; vmName: string }> => {
    const r = await ctx.localReplica(id, address);
    const { name } = r.inst;
    const vm = vmHere(
      r,
      `No replica of ${name} runs on this node`,
      `Read every replica with \`form logs ${name}\` / \`form manage get metrics ${name}\`, or open the dashboard of a node that runs it.`,
    );
    return { inst: r.inst, vmId: vm.id, vmName: r.vmName };
  };

  app.get(
    '/api/instances/:id/logs',
    {
      schema: {
        summary: "Log lines of this node's replica of your instance (what `form logs` shows), after a cursor",
        params: InstanceParams,
        querystring: Type.Object({ after: Type.Optional(Type.Integer({ minimum: 0 })) }),
        response: { 200: LogsInfoSchema, ...ReadErrors },
      },
    },
    async (req): Promise<LogsInfo> => {
      const s = session(req);
      const { inst, vmId, vmName } = await localVm(req.params.id, s.address);
      const r = await apis.logs(vmId, req.query.after);
      const entries = r.entries.slice(-MAX_LINES).map((e) => ({
        seq: e.seq,
        t: e.t,
        stream: inertLine(e.stream).slice(0, 16),
        src: inertLine(e.src).slice(0, 64),
        line: inertLine(e.line),
      }));
      return { instanceId: inst.id, vmName, entries, lastSeq: r.lastSeq };
    },
  );

  app.get(
    '/api/instances/:id/metrics',
    {
      schema: {
        summary: "One metrics sample of this node's replica of your instance",
        params: InstanceParams,
        response: { 200: ReplicaMetricsSchema, ...ReadErrors },
      },
    },
    async (req): Promise<ReplicaMetricsInfo> => {
      const s = session(req);
      const { inst, vmId, vmName } = await localVm(req.params.id, s.address);
      const m = await apis.vmMetrics(vmId);
      return {
        instanceId: inst.id,
        vmName,
        at: m.at,
        state: m.state,
        cpuSeconds: m.cpuSeconds,
        rssBytes: m.rssBytes,
        memMiB: m.memMiB,
        disks: (m.disks ?? []).map((d) => ({ disk: d.disk, readBytes: d.readBytes, writtenBytes: d.writtenBytes })),
        diskAllocatedBytes: m.diskAllocatedBytes ?? null,
        net: m.net
          ? { rxBytes: m.net.rxBytes, txBytes: m.net.txBytes, rxPackets: m.net.rxPackets, txPackets: m.net.txPackets }
          : null,
      };
    },
  );
}
