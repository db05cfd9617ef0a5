import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { ActionResult, CommitResultInfo, ConsoleInfo, DiskInfo, InstanceInfo } from '@formation/interface/web-api';
import { ApiClient, type ApiServer } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { nodeTimeoutMs, vmHere, type WebContext } from '../context.ts';
import {
  CommitResultSchema,
  ConsoleInfoSchema,
  DiskInfoSchema,
  InstanceInfoSchema,
  InstanceParams,
  ReadErrors,
} from '../schemas.ts';
import { diskInfo, instanceInfo, ownInstance, type VmmDiskState } from '../views.ts';

const ActionResponse = {
  200: Type.Object({ ok: Type.Literal(true), id: Type.String(), message: Type.String() }),
  401: ErrorBodySchema,
  403: ErrorBodySchema,
  404: ErrorBodySchema,
};

/** The developer's instances: list, one, console and disk state (reads). */
export function registerInstanceRoutes(app: ApiServer, ctx: WebContext): void {
  const { apis, session } = ctx;

  app.get(
    '/api/instances',
    {
      schema: {
        summary: "The signed-in developer's instances",
        response: { 200: Type.Array(InstanceInfoSchema), 401: ErrorBodySchema },
      },
    },
    async (req) => {
      const s = session(req);
      const ic = await ctx.instanceContext();
      const now = Date.now();
      return ic.instances
        .filter((i) => !i.deleted && i.ownerAddress === s.address)
        .map((i) => instanceInfo(i, ic, now, nodeTimeoutMs()));
    },
  );

  app.get(
    '/api/instances/:id',
    {
      schema: {
        summary: 'One of your instances',
        params: InstanceParams,
        response: { 200: InstanceInfoSchema, ...ReadErrors },
      },
    },
    async (req): Promise<InstanceInfo> => {
      const s = session(req);
      const ic = await ctx.instanceContext();
      return instanceInfo(ownInstance(ic.instances, req.params.id, s.address), ic, Date.now(), nodeTimeoutMs());
    },
  );

  app.get(
    '/api/instances/:id/console',
    {
      schema: {
        summary: 'Serial console of your instance on this node',
        params: InstanceParams,
        querystring: Type.Object({ bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })) }),
        response: { 200: ConsoleInfoSchema, ...ReadErrors },
      },
    },
    async (req): Promise<ConsoleInfo> => {
      const s = session(req);
      const r = await ctx.localReplica(req.params.id, s.address);
      const vm = vmHere(
        r,
        `No replica of ${r.inst.name} runs on this node`,
        "Open the dashboard of a node that runs it, or wait for this node's replica to start.",
      );
      const c = await apis.console(vm.id, req.query.bytes ?? 16384);
      return { instanceId: r.inst.id, vmName: r.vmName, output: c.output };
    },
  );

  app.get(
    '/api/instances/:id/disk',
    {
      schema: {
        summary: "Lock state of the encrypted data disk of this node's replica of your instance",
        params: InstanceParams,
        response: { 200: DiskInfoSchema, ...ReadErrors },
      },
    },
    async (req): Promise<DiskInfo> => {
      const s = session(req);
      const { vmName, vm } = await ctx.localReplica(req.params.id, s.address);
      if (!vm) return { state: 'unknown', detail: 'no replica of it runs on this node' };
      if (!s.key) return { state: 'unknown', detail: 'a read-only session cannot ask the node (it signs nothing)' };
      const vmm = new ApiClient(ctx.urls.vmm, s.key, 15_000);
      const d = await vmm.post<VmmDiskState>(`/attest/vms/${encodeURIComponent(vmName)}/disk`, {});
      return diskInfo(d);
    },
  );
}

/** Actions on the developer's instances, made with the session key under the developer's delegation. */
export function registerInstanceActionRoutes(app: ApiServer, ctx: WebContext): void {
  const { apis, manager, stateClient, log } = ctx;

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
        response: { 200: CommitResultSchema, ...ReadErrors },
      },
    },
    async (req): Promise<CommitResultInfo> => {
      const { s, key } = manager(req);
      const here = await ctx.localReplica(req.params.id, s.address);
      const { inst } = here;
      const vm = vmHere(
        here,
        `Cannot commit ${inst.name}: no replica of it runs on this node`,
        'Commit on the node that runs the replica you changed.',
      );
      const vmm = new ApiClient(ctx.urls.vmm, key, 600_000);
      const r = await vmm.post<{ sha256: string; bytes: number; frozenMs: number }>(`/vms/${vm.id}/commit`, {});
      const revision = inst.revision + 1;
      await stateClient.author(key, 'instance.commit', { instanceId: inst.id, revision, hash: r.sha256 });
      log.info({ address: s.address, instance: inst.id, revision }, 'dashboard: commit');
      return { instance: inst.id, revision, sha256: r.sha256, bytes: r.bytes, frozenMs: r.frozenMs };
    },
  );
}
