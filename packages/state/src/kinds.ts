import { addressOf, delegationProblem, sha256Hex } from '@formation/identity';
import { FORMNET_CIDR } from '@formation/interface';
import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { OpKind, UnsignedOp } from './op.ts';

/**
 * Op bodies (strict: no extra fields) and who may author each kind. Authorization uses only the op
 * itself and its direct dependencies, so every replica reaches the same verdict for the same op
 * whatever else it holds: an op that relies on another (an instance update relies on the instance's
 * create) must name that op in `deps`.
 */

const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const PubKey = Type.String({ pattern: '^0[23][0-9a-f]{64}$' });
const Address = Type.String({ pattern: '^0x[0-9a-f]{40}$' });
const InstanceId = Type.String({ pattern: '^[0-9a-f]{32}$' });
const Label = Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$' });
const Fqdn = Type.String({
  pattern: '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$',
  maxLength: 253,
});
const Ipv4 = Type.String({
  pattern: '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$',
});
const Cidr = Type.String({
  pattern:
    '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$',
});
const WgKey = Type.String({ pattern: '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$' });
const Endpoint = Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\s]+$' });
const Text = (max: number) => Type.String({ maxLength: max });
const Int = (min: number, max: number) => Type.Integer({ minimum: min, maximum: max });
const Resources = Type.Object(
  { vcpu: Int(1, 1024), memMiB: Int(1, 16 * 1024 * 1024), diskGiB: Int(1, 1024 * 1024) },
  { additionalProperties: false },
);
const strict = { additionalProperties: false };
/**
 * A developer's delegation (see @formation/identity delegation.ts): the op's author is a dashboard
 * session key acting for `owner`. Allowed on the kinds in DELEGABLE_KINDS only.
 */
const OnBehalfOf = Type.Optional(
  Type.Object(
    {
      owner: PubKey,
      delegate: PubKey,
      scope: Type.Literal('manage'),
      expiresAt: Int(0, Number.MAX_SAFE_INTEGER),
      sig: Type.String({ pattern: '^[0-9a-f]{128}$' }),
    },
    strict,
  ),
);

const NodeInfo = {
  name: Type.Optional(Text(64)),
  capacity: Resources,
  endpoint: Endpoint,
  p2pPeerId: Type.String({ minLength: 1, maxLength: 128 }),
  wgPublicKey: WgKey,
  formnetRange: Cidr,
};

export const BODY_SCHEMAS: Record<OpKind, TSchema> = {
  'node.register': Type.Object(NodeInfo, strict),
  'node.update': Type.Partial(Type.Object(NodeInfo), { ...strict, minProperties: 1 }),
  'node.heartbeat': Type.Object(
    {
      status: Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('draining')]),
      used: Type.Optional(
        Type.Object({ vcpu: Int(0, 1024), memMiB: Int(0, 16 * 1024 * 1024), diskGiB: Int(0, 1024 * 1024) }, strict),
      ),
    },
    strict,
  ),
  'account.update': Type.Object({ name: Text(64) }, strict),
  'formpack.publish': Type.Object(
    {
      id: Hex64,
      name: Label,
      owner: Address,
      sha256s: Type.Record(Type.String({ pattern: '^[a-z0-9_.-]{1,32}$' }), Hex64, { maxProperties: 16 }),
      size: Int(0, Number.MAX_SAFE_INTEGER),
      onBehalfOf: OnBehalfOf,
    },
    strict,
  ),
  'instance.create': Type.Object(
    {
      id: InstanceId,
      formpackId: Hex64,
      name: Label,
      replicas: Int(1, 16),
      resources: Resources,
      onBehalfOf: OnBehalfOf,
    },
    strict,
  ),
  'instance.update': Type.Object(
    {
      instanceId: InstanceId,
      formpackId: Type.Optional(Hex64),
      replicas: Type.Optional(Int(1, 16)),
      resources: Type.Optional(Resources),
      /** What the owner wants: `stopped` stops every replica's VM (disk kept), `running` starts them again. */
      desired: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('stopped')])),
      onBehalfOf: OnBehalfOf,
    },
    { ...strict, minProperties: 2 },
  ),
  'instance.delete': Type.Object({ instanceId: InstanceId, onBehalfOf: OnBehalfOf }, strict),
  'instance.claim': Type.Object({ instanceId: InstanceId, node: PubKey }, strict),
  'instance.status': Type.Object(
    {
      instanceId: InstanceId,
      node: PubKey,
      state: Type.Union(['pending', 'starting', 'running', 'stopped', 'failed', 'deleted'].map((s) => Type.Literal(s))),
      formnetIp: Type.Optional(Ipv4),
      revision: Int(0, Number.MAX_SAFE_INTEGER),
      reason: Type.Optional(Text(512)),
    },
    strict,
  ),
  'instance.commit': Type.Object(
    { instanceId: InstanceId, revision: Int(0, Number.MAX_SAFE_INTEGER), hash: Hex64, onBehalfOf: OnBehalfOf },
    strict,
  ),
  'formnet.allocate': Type.Object(
    {
      address: Ipv4,
      peer: Type.Union([PubKey, InstanceId]),
      kind: Type.Union([Type.Literal('node'), Type.Literal('developer'), Type.Literal('instance')]),
    },
    strict,
  ),
  'formnet.peer': Type.Object(
    { wgPublicKey: WgKey, endpoint: Type.Optional(Endpoint), allowedIps: Type.Array(Cidr, { maxItems: 16 }) },
    strict,
  ),
  /** The author leaves formnet (a later formnet.peer rejoins, keeping its address). */
  'formnet.leave': Type.Object({}, strict),
  'dns.record': Type.Union([
    Type.Object({ name: Fqdn, instanceId: InstanceId, onBehalfOf: OnBehalfOf }, strict),
    Type.Object({ name: Fqdn, addresses: Type.Array(Ipv4, { minItems: 1, maxItems: 8 }) }, strict),
  ]),
};

const CHECKERS = Object.fromEntries(
  Object.entries(BODY_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s)]),
) as Record<OpKind, ReturnType<typeof TypeCompiler.Compile>>;

/** The instance id an `instance.create` must carry: binds the id to its owner so nobody can squat it. */
export function instanceIdOf(ownerPublicKey: string, name: string, ts: number): string {
  return sha256Hex(`formation-instance\n${ownerPublicKey}\n${name}\n${ts}`).slice(0, 32);
}

/** What validation needs to know about a dependency. */
export interface DepView {
  hash: string;
  author: string;
  kind: OpKind;
  body: Record<string, unknown>;
}

export type Rejection = { code: 'STATE_OP_INVALID' | 'STATE_OP_FORBIDDEN'; reason: string };

const invalid = (reason: string): Rejection => ({ code: 'STATE_OP_INVALID', reason });
const forbidden = (reason: string): Rejection => ({ code: 'STATE_OP_FORBIDDEN', reason });

/** Body well-formed for its kind? Returns a reason or null. */
export function checkBody(kind: OpKind, body: unknown): string | null {
  const c = CHECKERS[kind];
  if (c.Check(body)) return null;
  const e = c.Errors(body).First();
  return e ? `${e.path || '/'} ${e.message}` : 'does not match the schema';
}

function findDep(deps: readonly DepView[], kind: OpKind, pred: (d: DepView) => boolean): DepView | undefined {
  return deps.find((d) => d.kind === kind && pred(d));
}

/** Kinds a delegate may author for its owner (body.onBehalfOf): managing Formpacks and instances. */
export const DELEGABLE_KINDS: ReadonlySet<OpKind> = new Set([
  'formpack.publish',
  'instance.create',
  'instance.update',
  'instance.delete',
  'instance.commit',
  'dns.record',
]);

/**
 * The account an op acts for: the owner of its delegation when it carries one, else its author.
 * Only meaningful for ops that passed `authorize` (which checks the delegation).
 */
export function actorOf(op: { author: string; body: Record<string, unknown> }): string {
  const d = op.body.onBehalfOf as { owner?: unknown } | undefined;
  return d && typeof d.owner === 'string' ? d.owner : op.author;
}

const createOf = (deps: readonly DepView[], instanceId: unknown) =>
  findDep(deps, 'instance.create', (d) => d.body.id === instanceId);

function ipInFormnet(ip: string): boolean {
  const [base, bits] = FORMNET_CIDR.split('/') as [string, string];
  const toInt = (s: string) => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  const start = toInt(base);
  const x = toInt(ip);
  return x >= start && x < start + size;
}

/**
 * May `op.author` make this op, given its direct dependencies? (Body already checked.)
 * Returns null when allowed.
 */
export function authorize(op: UnsignedOp, deps: readonly DepView[]): Rejection | null {
  const b = op.body;
  if (b.onBehalfOf !== undefined) {
    if (!DELEGABLE_KINDS.has(op.kind)) return invalid(`${op.kind}: cannot be made under a delegation`);
    // The op's own ts decides: every replica reaches the same verdict. (The state API also refuses
    // delegated ops whose ts is far from its clock, so a delegate cannot back-date past expiry there.)
    const problem = delegationProblem(b.onBehalfOf, op.author, op.ts);
    if (problem) return forbidden(`${op.kind}: ${problem}`);
  }
  // Who the op acts for (the delegation's owner, checked above, or the author).
  const a = actorOf(op);
  switch (op.kind) {
    case 'node.register':
    case 'node.update':
    case 'node.heartbeat':
    case 'account.update':
    case 'formnet.peer':
    case 'formnet.leave':
      return null; // about the author itself: the node/peer/account IS the author key
    case 'formpack.publish':
      return b.owner === addressOf(a)
        ? null
        : forbidden(`formpack.publish: owner ${b.owner} is not the author's address`);
    case 'instance.create':
      return b.id === instanceIdOf(a, b.name as string, op.ts)
        ? null
        : invalid('instance.create: id must be instanceIdOf(author, name, ts)');
    case 'instance.update':
    case 'instance.delete': {
      const c = createOf(deps, b.instanceId);
      if (!c) return invalid(`${op.kind}: deps must include the instance.create of ${b.instanceId}`);
      if (actorOf(c) !== a) return forbidden(`${op.kind}: only the owner of instance ${b.instanceId} may change it`);
      if (op.kind === 'instance.update' && !Object.keys(b).some((k) => k !== 'instanceId' && k !== 'onBehalfOf')) {
        return invalid('instance.update: changes nothing (give formpackId, replicas, resources or desired)');
      }
      return null;
    }
    case 'instance.claim': {
      if (b.node !== op.author) return forbidden('instance.claim: a node may only claim for itself');
      return createOf(deps, b.instanceId)
        ? null
        : invalid(`instance.claim: deps must include the instance.create of ${b.instanceId}`);
    }
    case 'instance.status':
      return b.node === op.author ? null : forbidden('instance.status: a node may only report its own status');
    case 'instance.commit': {
      const c = createOf(deps, b.instanceId);
      if (c && actorOf(c) === a) return null;
      const claim = findDep(
        deps,
        'instance.claim',
        (d) => b.onBehalfOf === undefined && d.author === a && d.body.instanceId === b.instanceId,
      );
      if (claim) return null;
      return c || claim
        ? forbidden(`instance.commit: only the owner or a node running a replica of ${b.instanceId} may commit`)
        : forbidden(
            `instance.commit: deps must include the instance.create (owner) or the author's instance.claim (replica) of ${b.instanceId}`,
          );
    }
    case 'formnet.allocate': {
      if (!ipInFormnet(b.address as string))
        return invalid(`formnet.allocate: ${b.address} is outside ${FORMNET_CIDR}`);
      if (b.kind === 'instance' ? !/^[0-9a-f]{32}$/.test(b.peer as string) : !/^0[23]/.test(b.peer as string)) {
        return invalid('formnet.allocate: peer must be an instance id for kind instance, else a public key');
      }
      if (b.peer === a) return null;
      return findDep(deps, 'node.register', (d) => d.author === a)
        ? null
        : forbidden('formnet.allocate: only the peer itself, or a node naming its node.register in deps, may allocate');
    }
    case 'dns.record': {
      if (!('instanceId' in b)) return null;
      const c = createOf(deps, b.instanceId);
      if (!c) return invalid(`dns.record: deps must include the instance.create of ${b.instanceId}`);
      return actorOf(c) === a ? null : forbidden(`dns.record: only the owner of instance ${b.instanceId} may name it`);
    }
  }
}
