import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { fingerprintGpus } from './gpu.ts';
import type { LogStore } from './log-store.ts';
import type { VmManager } from './manager.ts';
import { renderPrometheus, sampleVm, type VmSample } from './metrics.ts';
import type { VmView } from './types.ts';

type Signer = { publicKey: string; address: string };

const Nullable = (t: ReturnType<typeof Type.Number>) => Type.Union([t, Type.Null()]);
/** `VmSample` (open: the disk and network I/O parts are added when sampled). */
const VmSampleSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    owner: Type.Union([Type.String(), Type.Null()]),
    state: Type.String(),
    at: Type.Number(),
    cpuSeconds: Nullable(Type.Number()),
    rssBytes: Nullable(Type.Number()),
    vcpu: Type.Number(),
    memMiB: Type.Number(),
    diskGiB: Type.Number(),
    uptimeSeconds: Nullable(Type.Number()),
    restarts: Type.Number(),
    logBytes: Nullable(Type.Number()),
  },
  { additionalProperties: true },
);

/**
 * `GET /vms/:id/metrics` (JSON sample of one VM) and `GET /metrics` (Prometheus text). Both are signed
 * reads. `/metrics` is **owner-filtered**: each key gets the series of the VMs it may read (the node's key:
 * every VM, plus the node's capacity and use; an owner: its own VMs only; anyone else: nothing but an
 * empty exposition). A Prometheus server scrapes it through a signing proxy or with the node's key.
 */
export function registerMetricRoutes(
  app: ApiServer,
  manager: VmManager,
  logs: LogStore | null,
  auth: {
    reader: ReturnType<typeof requireSigner>;
    readable: (req: { signer?: Signer }, id: string) => VmView;
    mayRead: (signer: Signer | undefined, vm: VmView) => boolean;
    isOperator: (signer: Signer | undefined) => boolean;
  },
): void {
  const logBytes = (id: string): number | null => {
    try {
      return logs ? logs.bytes(id) : null;
    } catch {
      return null;
    }
  };
  // CPU/memory from /proc, then disk (QMP block stats, qcow2 allocation) and network (TAP counters).
  const sample = async (vm: VmView): Promise<VmSample> => {
    const s = sampleVm(vm, logBytes(vm.id));
    try {
      return { ...s, ...(await manager.io(vm.id)) };
    } catch {
      return s; // destroyed in between: the /proc part stands
    }
  };
  app.get(
    '/vms/:id/metrics',
    {
      preHandler: auth.reader,
      schema: {
        tags: ['vmm'],
        summary:
          "One VM's CPU time, memory, disk and network I/O, uptime, restarts, log bytes; its owner or the node only",
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }),
        response: { 200: VmSampleSchema, 401: ErrorBodySchema, 404: ErrorBodySchema },
      },
    },
    async (req) => {
      const vm = auth.readable(req, (req.params as { id: string }).id);
      return sample(vm);
    },
  );
  app.get(
    '/metrics',
    {
      preHandler: auth.reader,
      schema: {
        tags: ['vmm'],
        summary: 'Prometheus text: the VMs the signer may read (all, plus node capacity, for the node key)',
        querystring: Type.Object({}),
        response: {
          200: {
            description: 'Prometheus text exposition format 0.0.4',
            content: { 'text/plain': { schema: Type.String() } },
          },
          401: ErrorBodySchema,
        },
      },
    },
    async (req, reply) => {
      const vms = manager.list().filter((vm) => auth.mayRead(req.signer, vm));
      const node = auth.isOperator(req.signer)
        ? {
            ...manager.capacity(),
            gpus: { capacity: fingerprintGpus().filter((g) => g.passthrough).length, used: manager.gpusInUse().length },
          }
        : undefined;
      reply.header('content-type', 'text/plain; version=0.0.4; charset=utf-8');
      return renderPrometheus(await Promise.all(vms.map(sample)), node);
    },
  );
}
