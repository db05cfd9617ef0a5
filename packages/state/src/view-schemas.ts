import { Type } from '@sinclair/typebox';

// Response schemas (TypeBox) of the state API's views: the fields of views-types.ts that readers rely on.
// Every record is open (`additionalProperties: true`): the view functions own their shape, and a field
// added there is served without a change here (Fastify would drop a property a closed schema lacks).

const open = { additionalProperties: true } as const;
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Hash = Type.String({ pattern: '^[0-9a-f]{64}$' });
export const ResourcesSchema = Type.Object(
  { vcpu: Type.Number(), memMiB: Type.Number(), diskGiB: Type.Number() },
  open,
);

/** A signed op (what POST /ops takes): its own signature authenticates it. */
export const OpSchema = Type.Object(
  {
    v: Type.Literal(1),
    author: Type.String({ description: 'compressed secp256k1 public key, hex' }),
    deps: Type.Array(Hash, { description: 'hashes of causal predecessors, sorted, unique' }),
    kind: Type.String(),
    body: Type.Object({}, open),
    ts: Type.Integer(),
    sig: Type.String({ description: 'ECDSA secp256k1 over sha256(canonical encoding), r||s hex, low-s' }),
    hash: Type.Optional(Hash),
  },
  { additionalProperties: true, description: 'A signed op; its own signature authenticates it.' },
);

/** `ApplyResult` of POST /ops/batch. */
export const ApplyResultSchema = Type.Object({
  accepted: Type.Array(Type.String()),
  rejected: Type.Array(Type.Object({ hash: Type.String(), code: Type.String(), reason: Type.String() }, open)),
  pending: Type.Array(Type.String()),
  duplicates: Type.Array(Type.String()),
});

export const NetworkViewSchema = Type.Object(
  {
    genesis: Nullable(Type.String()),
    name: Nullable(Type.String()),
    policy: Type.String({ description: 'legacy-open | admins | open' }),
    admins: Type.Array(Type.String()),
    quotas: Type.Object({ instancesPerAccount: Type.Number(), replicasPerAccount: Type.Number() }, open),
    pending: Type.Array(Type.String()),
  },
  open,
);
export const ConflictViewSchema = Type.Object(
  { kind: Type.String(), key: Type.String(), parties: Type.Array(Type.String()) },
  open,
);
export const NodeViewSchema = Type.Object(
  {
    id: Type.String(),
    admitted: Type.Boolean(),
    address: Type.String(),
    name: Nullable(Type.String()),
    capacity: ResourcesSchema,
    endpoint: Type.String(),
    p2pPeerId: Type.String(),
    wgPublicKey: Type.String(),
    formnetRange: Type.String(),
    registeredBy: Type.String(),
  },
  open,
);
export const AccountViewSchema = Type.Object(
  { publicKey: Type.String(), address: Type.String(), name: Nullable(Type.String()) },
  open,
);
export const FormpackViewSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    owner: Type.String(),
    sha256s: Type.Record(Type.String(), Type.String()),
    size: Type.Number(),
    publishedBy: Type.String(),
  },
  open,
);
export const ReplicaViewSchema = Type.Object(
  {
    node: Type.String(),
    claimedBy: Type.String(),
    assigned: Type.Boolean(),
    state: Nullable(Type.String()),
    formnetIp: Nullable(Type.String()),
    revision: Nullable(Type.Number()),
    reason: Nullable(Type.String()),
    ts: Nullable(Type.Number()),
  },
  open,
);
export const InstanceViewSchema = Type.Object(
  {
    id: Type.String(),
    owner: Type.String(),
    ownerAddress: Type.String(),
    name: Type.String(),
    formpackId: Type.String(),
    replicas: Type.Number(),
    resources: ResourcesSchema,
    desired: Type.String({ description: 'running | stopped' }),
    createdBy: Type.String(),
    deleted: Type.Boolean(),
    revision: Type.Number(),
    revisionHash: Nullable(Type.String()),
    overQuota: Type.Boolean(),
    replicaSet: Type.Array(ReplicaViewSchema),
  },
  open,
);
export const FormnetPeerViewSchema = Type.Object(
  {
    publicKey: Type.String(),
    wgPublicKey: Type.String(),
    endpoint: Nullable(Type.String()),
    allowedIps: Type.Array(Type.String()),
  },
  open,
);
export const AllocationViewSchema = Type.Object(
  { address: Type.String(), peer: Type.String(), kind: Type.String(), allocatedBy: Type.String(), op: Type.String() },
  open,
);
export const DnsRecordViewSchema = Type.Object(
  {
    name: Type.String(),
    source: Type.String({ description: 'instance | explicit' }),
    instanceId: Nullable(Type.String()),
    addresses: Type.Array(Type.String()),
    owner: Type.String(),
  },
  open,
);
export const DomainViewSchema = Type.Object(
  {
    name: Type.String(),
    instanceId: Type.String(),
    owner: Type.String(),
    token: Type.String(),
    claim: Type.String(),
    state: Type.String({ description: 'pending | verified | contested | lapsed' }),
  },
  open,
);
export const PortViewSchema = Type.Object(
  {
    port: Type.Number(),
    instanceId: Type.String(),
    owner: Type.String(),
    target: Type.Number(),
    claim: Type.String(),
    ts: Type.Number(),
    state: Type.String({ description: 'pending | active | taken' }),
    grantedBy: Type.Array(Type.String()),
  },
  open,
);

/** The response schema of each `GET` view route, by its key in `store.views()`. */
export const VIEW_SCHEMAS = {
  network: NetworkViewSchema,
  conflicts: Type.Array(ConflictViewSchema),
  nodes: Type.Array(NodeViewSchema),
  accounts: Type.Array(AccountViewSchema),
  instances: Type.Array(InstanceViewSchema),
  formpacks: Type.Array(FormpackViewSchema),
  formnetPeers: Type.Array(FormnetPeerViewSchema),
  allocations: Type.Array(AllocationViewSchema),
  dns: Type.Array(DnsRecordViewSchema),
  domains: Type.Array(DomainViewSchema),
  ports: Type.Array(PortViewSchema),
} as const;

/** One event of GET /instances/:id/events (`InstanceEvent`). */
export const InstanceEventSchema = Type.Object(
  {
    at: Type.Number(),
    kind: Type.String(),
    node: Nullable(Type.String()),
    author: Nullable(Type.String()),
    actor: Nullable(Type.String()),
    op: Nullable(Type.String()),
    detail: Type.String(),
  },
  open,
);
