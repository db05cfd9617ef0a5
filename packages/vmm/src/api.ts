import type { NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, requireSigner } from '@formation/service';
import { Type } from '@sinclair/typebox';
import { listImages } from './images.ts';
import { registerLogRoutes, type VmLogs } from './logs-api.ts';
import type { VmManager } from './manager.ts';
import { registerMetricRoutes } from './metrics-api.ts';
import { VM_STATES } from './state-machine.ts';
import type { VmView } from './types.ts';

const Id = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const Resources = Type.Object({ vcpu: Type.Integer(), memMiB: Type.Integer(), diskGiB: Type.Integer() });
const Vm = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    owner: Type.Union([Type.String(), Type.Null()]),
    state: Type.String({ description: `One of: ${VM_STATES.join(', ')}` }),
    stateReason: Type.String(),
    resources: Resources,
    ready: Type.Boolean(),
    pid: Type.Union([Type.Integer(), Type.Null()]),
  },
  { additionalProperties: true },
);
const Snapshot = Type.Object({
  id: Type.String(),
  createdAt: Type.String(),
  memoryBytes: Type.Integer(),
  diskBytes: Type.Integer(),
  totalMs: Type.Number(),
  ready: Type.Boolean(),
});
const Amounts = Type.Object(
  { vcpu: Type.Number(), memMiB: Type.Number(), diskGiB: Type.Number() },
  { additionalProperties: true },
);
const Health = Type.Object({
  status: Type.String(),
  driver: Type.Union([
    Type.Object(
      { driver: Type.String(), available: Type.Boolean(), accel: Type.String() },
      { additionalProperties: true, description: 'DriverFingerprint: capabilities, version, why not KVM…' },
    ),
    Type.Null(),
  ]),
  vms: Type.Object({ total: Type.Integer(), running: Type.Integer() }),
  capacity: Amounts,
  used: Amounts,
});
const Images = Type.Object({
  images: Type.Array(
    Type.Object({
      name: Type.String(),
      format: Type.String({ description: 'raw | qcow2 | vmdk | formpack' }),
      file: Type.String(),
      bytes: Type.Number(),
      modifiedAt: Type.String(),
    }),
  ),
});
const CreateBody = Type.Object(
  {
    formpack: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    image: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    resources: Type.Optional(
      Type.Object(
        {
          vcpu: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
          memMiB: Type.Optional(Type.Integer({ minimum: 64 })),
          diskGiB: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    forwardPorts: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 16 })),
    init: Type.Optional(Type.String({ pattern: '^/[A-Za-z0-9_./-]+$' })),
    restartPolicy: Type.Optional(Type.Union([Type.Literal('never'), Type.Literal('on-failure')])),
    dataDiskMiB: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024 })),
    start: Type.Optional(Type.Boolean()),
    /** GPUs to pass through (VFIO); the node fills it from the instance's `gpu`. */
    gpu: Type.Optional(
      Type.Object(
        {
          count: Type.Integer({ minimum: 1, maximum: 16 }),
          vendor: Type.Optional(Type.String({ pattern: '^[a-z0-9]{1,16}$' })),
        },
        { additionalProperties: false },
      ),
    ),
    /** false: the VM reaches formnet only, never the internet (see the README's "Egress"). */
    egress: Type.Optional(Type.Boolean()),
    /** Wait until the guest reports ready before answering. */
    wait: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const ActionBody = Type.Object(
  {
    force: Type.Optional(Type.Boolean()),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
    wait: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const errors = {
  400: ErrorBodySchema,
  401: ErrorBodySchema,
  403: ErrorBodySchema,
  404: ErrorBodySchema,
  409: ErrorBodySchema,
  500: ErrorBodySchema,
};

/**
 * The VMM REST API (seed 003 + snapshots/restore/console). Mutating routes are signed; the signer
 * becomes the VM's owner and only the owner may act on it.
 */
export interface VmmAccess {
  /**
   * Public keys that see every VM (the node's own key: its controller and dashboard). Everyone else
   * sees, in lists, consoles and details, only the VMs they own.
   */
  operators?: readonly string[];
  /**
   * The owner (address) of a VM the API did not create for a signer: e.g. an instance's VM booted by
   * the node's controller belongs to the instance's owner. Default: the VM's recorded owner.
   */
  ownerOf?: (vm: VmView) => string | null;
}

export function registerVmmRoutes(
  app: ApiServer,
  manager: VmManager,
  nonces?: NonceCache,
  access: VmmAccess = {},
  logs?: VmLogs,
): void {
  const signed = requireSigner(nonces);
  // Commit is part of managing an instance: a dashboard session may do it under the owner's delegation.
  const delegable = requireSigner(nonces, { allowDelegation: true });
  // Reads are signed too (least disclosure: names, addresses, consoles are the owner's business).
  const reader = delegable;
  const operators = new Set(access.operators ?? []);
  const ownerOf = (vm: VmView) => (access.ownerOf ? access.ownerOf(vm) : vm.owner) ?? vm.owner;
  const mayRead = (signer: { publicKey: string; address: string } | undefined, vm: VmView): boolean =>
    !!signer && (operators.has(signer.publicKey) || ownerOf(vm)?.toLowerCase() === signer.address.toLowerCase());
  const readable = (req: { signer?: { publicKey: string; address: string } }, id: string): VmView => {
    const vm = manager.get(id);
    if (!mayRead(req.signer, vm)) {
      // Same answer as a VM that does not exist: whether someone else's VM is here is not yours to learn.
      throw new FormError('VM_NOT_FOUND', `Cannot find VM ${id}`, { hint: 'List yours with GET /vms (signed).' });
    }
    return vm;
  };
  const waitReadyMs = 120_000;

  app.get(
    '/health',
    { schema: { summary: 'Driver, VM counts, capacity and use', response: { 200: Health } } },
    async () => {
      const { capacity, used } = manager.capacity();
      const vms = manager.list();
      return {
        status: 'ok',
        driver: manager.fingerprint ?? null,
        vms: { total: vms.length, running: vms.filter((v) => v.state === 'running').length },
        capacity,
        used,
      };
    },
  );

  app.get(
    '/vms',
    {
      preHandler: reader,
      schema: {
        summary: "List the signer's VMs (all of them for the node's own key)",
        response: { 200: Type.Object({ vms: Type.Array(Vm) }), ...errors },
      },
    },
    async (req) => ({ vms: manager.list().filter((vm) => mayRead(req.signer, vm)) }),
  );

  app.post(
    '/vms',
    {
      preHandler: signed,
      schema: {
        tags: ['vmm'],
        summary: 'Create (and start) a VM from a Formpack or image',
        body: CreateBody,
        response: { 201: Vm, ...errors },
      },
    },
    async (req, reply) => {
      const { wait, ...body } = req.body;
      let vm = await manager.create(body, req.signer?.address ?? null);
      if (wait && body.start !== false) vm = await manager.waitReady(vm.id, waitReadyMs);
      return reply.status(201).send(vm);
    },
  );

  app.get(
    '/vms/:id',
    {
      preHandler: reader,
      schema: {
        tags: ['vmm'],
        summary: 'One VM (state, network, health); its owner or the node only',
        params: Id,
        response: { 200: Vm, ...errors },
      },
    },
    async (req) => readable(req, req.params.id),
  );

  app.delete(
    '/vms/:id',
    {
      preHandler: signed,
      schema: {
        tags: ['vmm'],
        summary: 'Destroy a VM',
        params: Id,
        response: { 200: Type.Object({ id: Type.String(), state: Type.Literal('destroyed') }), ...errors },
      },
    },
    async (req) => {
      await manager.destroy(req.params.id, req.signer?.address);
      return { id: req.params.id, state: 'destroyed' as const };
    },
  );

  for (const action of ['start', 'stop', 'restart', 'pause', 'resume', 'suspend'] as const) {
    app.post(
      `/vms/:id/${action}`,
      {
        preHandler: signed,
        schema: {
          tags: ['vmm'],
          summary:
            action === 'suspend'
              ? 'Suspend a VM to disk (memory saved, process gone; resume or start brings it back)'
              : `${action} a VM`,
          params: Id,
          body: Type.Optional(ActionBody),
          response: { 200: Vm, ...errors },
        },
      },
      async (req) => {
        const id = req.params.id;
        const who = req.signer?.address;
        const b = req.body ?? {};
        let vm =
          action === 'stop'
            ? await manager.stop(id, who, { force: b.force, timeoutMs: b.timeoutMs })
            : await manager[action](id, who);
        if (b.wait && (action === 'start' || action === 'restart')) vm = await manager.waitReady(id, waitReadyMs);
        return vm;
      },
    );
  }

  app.post(
    '/vms/:id/snapshots',
    {
      preHandler: signed,
      schema: { summary: 'Snapshot memory + disk', params: Id, response: { 201: Snapshot, ...errors } },
    },
    async (req, reply) => reply.status(201).send(await manager.snapshot(req.params.id, req.signer?.address)),
  );

  app.post(
    '/vms/:id/commit',
    {
      preHandler: delegable,
      schema: {
        tags: ['vmm'],
        summary: 'Commit the disk as a new revision (guest frozen, VM paused while it is copied)',
        params: Id,
        response: {
          201: Type.Object({
            revision: Type.Integer(),
            createdAt: Type.String(),
            sha256: Type.String(),
            bytes: Type.Integer(),
            frozenMs: Type.Integer(),
          }),
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const { file: _f, ...pub } = await manager.commit(req.params.id, req.signer?.address);
      return reply.status(201).send(pub);
    },
  );

  app.post(
    '/vms/:id/restore',
    {
      preHandler: signed,
      schema: {
        tags: ['vmm'],
        summary: 'Restore a snapshot (the latest when none named)',
        params: Id,
        body: Type.Optional(Type.Object({ snapshot: Type.Optional(Type.String()) }, { additionalProperties: false })),
        response: { 200: Vm, ...errors },
      },
    },
    async (req) => manager.restore(req.params.id, req.body?.snapshot, req.signer?.address),
  );

  app.get(
    '/vms/:id/console',
    {
      preHandler: reader,
      schema: {
        tags: ['vmm'],
        summary: 'Recent serial console output; its owner or the node only',
        params: Id,
        querystring: Type.Object({ bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1 << 20 })) }),
        response: { 200: Type.Object({ id: Type.String(), output: Type.String() }), ...errors },
      },
    },
    async (req) => {
      readable(req, req.params.id);
      return { id: req.params.id, output: manager.console(req.params.id, req.query.bytes ?? 16384) };
    },
  );

  if (logs) registerLogRoutes(app, logs, { reader, readable });
  registerMetricRoutes(app, manager, logs?.store ?? null, {
    reader,
    readable,
    mayRead,
    isOperator: (signer) => !!signer && operators.has(signer.publicKey),
  });

  app.get(
    '/images',
    { schema: { summary: 'Images on this node (raw, qcow2, vmdk, Formpacks)', response: { 200: Images } } },
    async () => ({
      images: listImages(manager.imagesDir),
    }),
  );
}
