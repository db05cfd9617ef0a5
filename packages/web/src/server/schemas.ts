import { ErrorBodySchema } from '@formation/interface/error-schema';
import type {
  BuildStarted,
  CommitResultInfo,
  ConsoleInfo,
  DiskInfo,
  FormpackDetail,
  FormpackInfo,
  InstanceInfo,
  LogsInfo,
  NetworkInfo,
  ReplicaMetricsInfo,
  SessionInfo,
  ShipResultInfo,
} from '@formation/interface/web-api';
import { streamedBody } from '@formation/service';
import { type Static, type TSchema, Type } from '@sinclair/typebox';

// Response schemas (TypeBox) of the BFF routes, after the types in `@formation/interface/web-api`. Records the BFF maps
// from upstream views are open (`additionalProperties: true`): Fastify drops a property a closed schema
// lacks, and what the dashboard serves must not change when a view gains a field.

const open = { additionalProperties: true } as const;
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Amounts = Type.Object({ vcpu: Type.Number(), memMiB: Type.Number(), diskGiB: Type.Number() }, open);

/** The `:id` of an instance route: an instance id or name. */
export const InstanceParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
/** The errors of a read of one of the session's instances: not signed in, refused, not found. */
export const ReadErrors = { 401: ErrorBodySchema, 403: ErrorBodySchema, 404: ErrorBodySchema };

/** `SessionInfo`. */
export const SessionInfoSchema = Type.Object({
  address: Type.String(),
  expiresAt: Type.Integer(),
  canManage: Type.Boolean(),
});
export const OkSchema = Type.Object({ ok: Type.Boolean() });

/** `ReplicaInfo`. */
export const ReplicaInfoSchema = Type.Object(
  {
    node: Type.String(),
    nodeAddress: Type.String(),
    nodeName: Nullable(Type.String()),
    state: Type.String(),
    health: Type.String({ description: 'healthy | unhealthy | starting | suspended | stopped | failed | unknown' }),
    assigned: Type.Boolean(),
    formnetIp: Nullable(Type.String()),
    dnsName: Nullable(Type.String()),
    revision: Nullable(Type.Number()),
    reason: Nullable(Type.String()),
    updatedAt: Nullable(Type.Number()),
    local: Type.Boolean(),
    vmName: Type.String(),
  },
  open,
);
/** `InstanceInfo`. */
export const InstanceInfoSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    status: Type.String({ description: 'PENDING | SUCCESS | FAILURE' }),
    reason: Nullable(Type.String()),
    running: Type.Number(),
    wanted: Type.Number(),
    desired: Type.String({ description: 'running | stopped' }),
    formpackId: Type.String(),
    replicas: Type.Number(),
    resources: Amounts,
    revision: Type.Number(),
    dnsName: Nullable(Type.String()),
    replicaSet: Type.Array(ReplicaInfoSchema),
  },
  open,
);
/** `ConsoleInfo`. */
export const ConsoleInfoSchema = Type.Object({
  instanceId: Type.String(),
  vmName: Type.String(),
  output: Type.String(),
});
/** `DiskInfo`. */
export const DiskInfoSchema = Type.Object(
  { state: Type.String({ description: 'absent | locked | unlocked | unknown' }), detail: Type.String() },
  open,
);
/** `CommitResultInfo`. */
export const CommitResultSchema = Type.Object(
  {
    instance: Type.String(),
    revision: Type.Number(),
    sha256: Type.String(),
    bytes: Type.Number(),
    frozenMs: Type.Number(),
  },
  open,
);
/** `LogsInfo`. */
export const LogsInfoSchema = Type.Object(
  {
    instanceId: Type.String(),
    vmName: Type.String(),
    entries: Type.Array(
      Type.Object(
        { seq: Type.Number(), t: Type.Number(), stream: Type.String(), src: Type.String(), line: Type.String() },
        open,
      ),
    ),
    lastSeq: Type.Number(),
  },
  open,
);
/** `ReplicaMetricsInfo`. */
export const ReplicaMetricsSchema = Type.Object(
  {
    instanceId: Type.String(),
    vmName: Type.String(),
    at: Type.Number(),
    state: Type.String(),
    cpuSeconds: Nullable(Type.Number()),
    rssBytes: Nullable(Type.Number()),
    memMiB: Type.Number(),
    disks: Type.Array(
      Type.Object({ disk: Type.String(), readBytes: Type.Number(), writtenBytes: Type.Number() }, open),
    ),
    diskAllocatedBytes: Nullable(Type.Number()),
    net: Nullable(
      Type.Object(
        { rxBytes: Type.Number(), txBytes: Type.Number(), rxPackets: Type.Number(), txPackets: Type.Number() },
        open,
      ),
    ),
  },
  open,
);
/** `FormpackInfo`. */
const formpackInfo = {
  id: Type.String(),
  name: Type.String(),
  size: Type.Number(),
  published: Type.Boolean(),
  local: Type.Boolean(),
  createdAt: Nullable(Type.String()),
};
export const FormpackInfoSchema = Type.Object(formpackInfo, open);
/** `FormpackDetail`. */
export const FormpackDetailSchema = Type.Object(
  {
    ...formpackInfo,
    manifest: Nullable(
      Type.Object(
        {
          resources: Amounts,
          cmdline: Type.String(),
          init: Type.String(),
          artifacts: Type.Record(Type.String(), Type.Object({}, open)),
          formfile: Type.Object({}, open),
          measurement: Nullable(Type.String()),
        },
        open,
      ),
    ),
    sha256s: Type.Record(Type.String(), Type.String()),
    instances: Type.Array(Type.Object({ id: Type.String(), name: Type.String() }, open)),
  },
  open,
);
/** `ShipResultInfo`. */
export const ShipResultSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    formpackId: Type.String(),
    replicas: Type.Number(),
    created: Type.Boolean(),
    updated: Type.Boolean(),
  },
  open,
);
/** `NetworkInfo`: nodes, formnet peers, load samples (`self` is the node's formnet `GET /node` answer). */
export const NetworkInfoSchema = Type.Object(
  {
    self: Nullable(
      Type.Object(
        { node: Type.String(), formnetAddress: Type.String(), domain: Type.String(), instanceCidr: Type.String() },
        open,
      ),
    ),
    nodes: Type.Array(
      Type.Object(
        {
          id: Type.String(),
          address: Type.String(),
          name: Nullable(Type.String()),
          endpoint: Type.String(),
          formnetRange: Type.String(),
          capacity: Amounts,
          used: Nullable(Amounts),
          status: Nullable(Type.String()),
          lastHeartbeat: Nullable(Type.Number()),
          self: Type.Boolean(),
        },
        open,
      ),
    ),
    peers: Type.Array(
      Type.Object(
        {
          publicKey: Type.String(),
          address: Type.String(),
          kind: Type.String({ description: 'node | instance | developer | other' }),
          label: Type.String(),
          endpoint: Nullable(Type.String()),
          allowedIps: Type.Array(Type.String()),
        },
        open,
      ),
    ),
    samples: Type.Array(
      Type.Object({ ts: Type.Number(), node: Type.String() }, { ...open, description: 'MetricSample' }),
    ),
  },
  open,
);
/** `BuildStarted`. */
export const BuildStartedSchema = Type.Object({
  buildId: Type.String(),
  id: Type.String(),
  name: Type.String(),
  status: Type.String(),
  cached: Type.Boolean(),
});
/** A build log: NDJSON `BuildLogEvent` lines, streamed. */
export const BuildLogResponse = {
  description: 'One JSON BuildLogEvent per line (step, log, end), as they happen',
  content: { 'application/x-ndjson': { schema: streamedBody() } },
};

type Accepts<S extends TSchema, T> = T extends Static<S> ? true : false;
// Compile-time: each schema accepts the contract type it serves (a field renamed or retyped there fails tsc).
true satisfies Accepts<typeof SessionInfoSchema, SessionInfo> &
  Accepts<typeof InstanceInfoSchema, InstanceInfo> &
  Accepts<typeof ConsoleInfoSchema, ConsoleInfo> &
  Accepts<typeof DiskInfoSchema, DiskInfo> &
  Accepts<typeof CommitResultSchema, CommitResultInfo> &
  Accepts<typeof LogsInfoSchema, LogsInfo> &
  Accepts<typeof ReplicaMetricsSchema, ReplicaMetricsInfo> &
  Accepts<typeof FormpackInfoSchema, FormpackInfo> &
  Accepts<typeof FormpackDetailSchema, FormpackDetail> &
  Accepts<typeof ShipResultSchema, ShipResultInfo> &
  Accepts<typeof NetworkInfoSchema, NetworkInfo> &
  Accepts<typeof BuildStartedSchema, BuildStarted>;
