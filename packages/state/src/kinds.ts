import { isIPv4, isIPv6 } from 'node:net';
import { addressOf, delegationProblem, sha256Hex } from '@formation/identity';
import { FORMNET_CIDR } from '@formation/interface';
import { HealthcheckSchema } from '@formation/interface/formpack-schema';
import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { OpKind, UnsignedOp } from './op.ts';
import { publicPortProblem } from './public-ports.ts';

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
      // Optional in the schema only so that the rule names the problem for old (V1) delegations.
      issuedAt: Type.Optional(Int(0, Number.MAX_SAFE_INTEGER)),
      expiresAt: Int(0, Number.MAX_SAFE_INTEGER),
      sig: Type.String({ pattern: '^[0-9a-f]{128}$' }),
    },
    strict,
  ),
);

/** A GPU a node reports (issue 20): what placement of `GPU` instances counts. */
const Gpu = Type.Object(
  {
    address: Type.String({ pattern: '^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$' }),
    vendor: Type.String({ pattern: '^[0-9a-f]{4}$' }),
    device: Type.String({ pattern: '^[0-9a-f]{4}$' }),
    iommuGroup: Type.Union([Int(0, 1_000_000), Type.Null()]),
    driver: Type.Union([Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), Type.Null()]),
    passthrough: Type.Boolean(),
    reason: Type.Optional(Text(256)),
  },
  { additionalProperties: false },
);
/** What an instance asks for: `count` GPUs, of `vendor` (name or PCI vendor id) or any. */
const GpuRequest = Type.Object(
  { count: Int(1, 16), vendor: Type.Optional(Type.String({ pattern: '^[a-z0-9]{1,16}$' })) },
  { additionalProperties: false },
);

const NodeInfo = {
  name: Type.Optional(Text(64)),
  capacity: Resources,
  gpus: Type.Optional(Type.Array(Gpu, { maxItems: 16 })),
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
      /**
       * What the owner declares for public reach (from the Formfile): the EXPOSE'd ports and the
       * HEALTHCHECK, so every node's ingress can route and check without holding the Formpack.
       */
      service: Type.Optional(
        Type.Object(
          {
            expose: Type.Array(Int(1, 65535), { maxItems: 64, uniqueItems: true }),
            healthcheck: Type.Optional(HealthcheckSchema),
            /** `HTTPS <port> TERMINATE=ingress`: the ingress ends TLS and sends plain HTTP to `port`. */
            ingressTls: Type.Optional(Type.Object({ port: Int(1, 65535) }, strict)),
          },
          strict,
        ),
      ),
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
      gpu: Type.Optional(GpuRequest),
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
      /** The GPUs it needs now (`null`: none any more). */
      gpu: Type.Optional(Type.Union([GpuRequest, Type.Null()])),
      /** What the owner wants: `stopped` stops every replica's VM (disk kept), `running` starts them again. */
      desired: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('stopped')])),
      /** Scale to zero: suspend a replica idle this many minutes (its next connection wakes it); 0 = off. */
      autostopMinutes: Type.Optional(Int(0, 10_080)),
      /** `form manage start` on a running instance: wake its replicas suspended before this time (ms, the owner's clock). */
      wakeAt: Type.Optional(Int(0, Number.MAX_SAFE_INTEGER)),
      /** Rolling updates (README "Releases"): the release this update makes (create = 1), how many replicas may be down at once, and the release it restores. */
      release: Type.Optional(Int(2, Number.MAX_SAFE_INTEGER)),
      maxUnavailable: Type.Optional(Int(1, 16)),
      rollbackOf: Type.Optional(Int(1, Number.MAX_SAFE_INTEGER)),
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
      state: Type.Union(
        ['pending', 'starting', 'running', 'suspended', 'stopped', 'failed', 'deleted'].map((s) => Type.Literal(s)),
      ),
      formnetIp: Type.Optional(Ipv4),
      revision: Int(0, Number.MAX_SAFE_INTEGER),
      reason: Type.Optional(Text(512)),
      /** The release (instance.update `release`, create = 1) this replica's VM was booted for. */
      release: Type.Optional(Int(1, Number.MAX_SAFE_INTEGER)),
    },
    strict,
  ),
  /** The placed node's HEALTHCHECK verdict on its own replica of `release` (cites its instance.claim). */
  'instance.health': Type.Object(
    {
      instanceId: InstanceId,
      node: PubKey,
      status: Type.Union([Type.Literal('starting'), Type.Literal('healthy'), Type.Literal('unhealthy')]),
      release: Int(1, Number.MAX_SAFE_INTEGER),
      reason: Type.Optional(Type.String({ maxLength: 200, pattern: '^[\\x20-\\x7e]*$' })),
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
  /**
   * A network's genesis (deps must be []): its name, who admits nodes, and per-account quotas. Which
   * genesis a store follows is its `genesis` option or the first one it accepted (see README).
   */
  'network.init': Type.Object(
    {
      name: Text(64),
      admission: Type.Union([Type.Literal('admins'), Type.Literal('open')]),
      admins: Type.Array(PubKey, { minItems: 1, maxItems: 16, uniqueItems: true }),
      quotas: Type.Optional(
        Type.Object({ instancesPerAccount: Int(1, 100_000), replicasPerAccount: Int(1, 1_600_000) }, strict),
      ),
    },
    strict,
  ),
  /** An admin admits a node with its slice of formnet (cites the network.init). */
  'node.admit': Type.Object({ node: PubKey, formnetRange: Cidr }, strict),
  /** An admin removes a node (cites the network.init); a later node.admit re-admits it (LWW). */
  'node.remove': Type.Object({ node: PubKey }, strict),
  /** The author revokes every delegation it gave `delegate`: delegated ops dated after this stop counting. */
  'delegation.revoke': Type.Object({ delegate: PubKey }, strict),
  /**
   * Custom domains (see README "Custom domains"): the owner claims `name` for an instance with a
   * random token, proves control by DNS (TXT `_formation.<name>` = token, or a CNAME to the
   * instance's name), admitted nodes record what they saw, and the owner may release it.
   */
  'dns.claim': Type.Object(
    { name: Fqdn, instanceId: InstanceId, token: Type.String({ pattern: '^[0-9a-f]{32}$' }), onBehalfOf: OnBehalfOf },
    strict,
  ),
  'dns.verified': Type.Object(
    { claim: Hex64, name: Fqdn, method: Type.Union([Type.Literal('txt'), Type.Literal('cname')]) },
    strict,
  ),
  'dns.release': Type.Object({ name: Fqdn, onBehalfOf: OnBehalfOf }, strict),
  /** A node that vouched for a claim no longer sees its proof (after its grace period): why, in `reason`. */
  'dns.lapsed': Type.Object(
    { claim: Hex64, name: Fqdn, reason: Type.String({ minLength: 1, maxLength: 256, pattern: '^[\\x20-\\x7e]*$' }) },
    strict,
  ),
  /** Plain TCP on the nodes' public addresses (README "TCP ports"): public `port` → the instance's guest `target`. */
  'port.claim': Type.Object(
    { instanceId: InstanceId, port: Int(1, 65535), target: Int(1, 65535), onBehalfOf: OnBehalfOf },
    strict,
  ),
  'port.release': Type.Object({ port: Int(1, 65535), onBehalfOf: OnBehalfOf }, strict),
  /** An admitted node grants a claim on a port it sees free (cites the claim): a quorum makes it the holder's. */
  'port.granted': Type.Object({ claim: Hex64, port: Int(1, 65535) }, strict),
};

/** Member addresses (nodes and developers) come from this pool; node slices lie outside it. */
export const FORMNET_MEMBER_POOL = '10.128.0.0/16';
/** Every node's slice of formnet for its instances is one /24 (`@formation/net` SLICE_PREFIX). */
export const NODE_RANGE_PREFIX = 24;

/** An IPv4 CIDR as [base, size], or undefined when malformed. */
export function parseCidr(cidr: string): { base: number; size: number; bits: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidr);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = m[5] === undefined ? 32 : Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) return undefined;
  const base = octets.reduce((a, o) => a * 256 + o, 0);
  return { base, size: 2 ** (32 - bits), bits };
}

/** Does CIDR (or address) `inner` lie entirely inside CIDR `outer`? */
export function cidrWithin(inner: string, outer: string): boolean {
  const i = parseCidr(inner);
  const o = parseCidr(outer);
  if (!i || !o) return false;
  const ib = i.base - (i.base % i.size);
  return ib >= o.base - (o.base % o.size) && ib + i.size <= o.base - (o.base % o.size) + o.size;
}

/** Do two CIDRs share an address? */
export function cidrsOverlap(a: string, b: string): boolean {
  return cidrWithin(a, b) || cidrWithin(b, a);
}

/** Why `cidr` is not a valid node slice, or null: one aligned /24 inside formnet, outside the member pool. */
export function rangeProblem(cidr: string): string | null {
  const c = parseCidr(cidr);
  if (!c || c.base % c.size !== 0) return `formnetRange ${cidr} is not an aligned IPv4 CIDR`;
  if (c.bits !== NODE_RANGE_PREFIX) return `formnetRange ${cidr} must be a /${NODE_RANGE_PREFIX}`;
  if (!cidrWithin(cidr, FORMNET_CIDR)) return `formnetRange ${cidr} lies outside formnet ${FORMNET_CIDR}`;
  if (cidrsOverlap(cidr, FORMNET_MEMBER_POOL)) {
    return `formnetRange ${cidr} lies in the member address pool ${FORMNET_MEMBER_POOL}`;
  }
  return null;
}

/** Why `endpoint` is not `host:port` (IPv4, [IPv6] or a DNS name; port 1-65535), or null. */
export function endpointProblem(endpoint: string): string | null {
  const m = /^(.*):(\d{1,5})$/.exec(endpoint);
  const bad = `endpoint ${JSON.stringify(endpoint)} must be host:port (IPv4, [IPv6] or a DNS name, port 1-65535)`;
  if (!m) return bad;
  const host = m[1] as string;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return bad;
  if (host.startsWith('[') && host.endsWith(']')) return isIPv6(host.slice(1, -1)) ? null : bad;
  if (isIPv4(host)) return null;
  if (/^\d+(\.\d+)*$/.test(host)) return bad; // looks numeric but is not an address
  const dns =
    /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
  return dns.test(host) ? null : bad;
}

const CHECKERS = Object.fromEntries(
  Object.entries(BODY_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s)]),
) as Record<OpKind, ReturnType<typeof TypeCompiler.Compile>>;

/** The instance id an `instance.create` must carry: binds the id to its owner so nobody can squat it. */
export function instanceIdOf(ownerPublicKey: string, name: string, ts: number): string {
  return sha256Hex(`formation-instance\n${ownerPublicKey}\n${name}\n${ts}`).slice(0, 32);
}

/**
 * The token a `dns.claim` must carry (the TXT value that proves control): bound to the claiming
 * account, the name and the op's ts, so nobody can copy another owner's token to make their proof
 * count too (a copied token would turn the owner's own TXT record into a proof for the copier).
 */
export function domainTokenOf(ownerPublicKey: string, name: string, ts: number): string {
  return sha256Hex(`formation-domain\n${ownerPublicKey}\n${name}\n${ts}`).slice(0, 32);
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
  'dns.claim',
  'dns.release',
  'port.claim',
  'port.release',
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
    case 'node.update': {
      if (b.formnetRange !== undefined) {
        const p = rangeProblem(b.formnetRange as string);
        if (p) return invalid(`${op.kind}: ${p}`);
      }
      if (b.endpoint !== undefined) {
        const p = endpointProblem(b.endpoint as string);
        if (p) return invalid(`${op.kind}: ${p}`);
      }
      return null; // about the author itself: the node IS the author key
    }
    case 'formnet.peer': {
      if (b.endpoint !== undefined) {
        const p = endpointProblem(b.endpoint as string);
        if (p) return invalid(`formnet.peer: ${p}`);
      }
      for (const ip of b.allowedIps as string[]) {
        const c = parseCidr(ip);
        if (!c || c.base % c.size !== 0 || !cidrWithin(ip, FORMNET_CIDR)) {
          return invalid(`formnet.peer: allowedIps ${ip} must be an aligned CIDR inside formnet ${FORMNET_CIDR}`);
        }
      }
      return null;
    }
    case 'node.heartbeat':
    case 'account.update':
    case 'dns.release':
    case 'formnet.leave':
    case 'delegation.revoke':
      return null; // about the author itself: the node/peer/account IS the author key
    case 'network.init': {
      if (op.deps.length > 0) return invalid('network.init: a genesis must have no deps');
      return null;
    }
    case 'node.admit':
    case 'node.remove': {
      const init = findDep(deps, 'network.init', () => true);
      if (!init) return invalid(`${op.kind}: deps must include the network.init (genesis)`);
      if (!(init.body.admins as string[]).includes(op.author)) {
        return forbidden(`${op.kind}: only an admin of the network may admit or remove nodes`);
      }
      if (op.kind === 'node.admit') {
        const p = rangeProblem(b.formnetRange as string);
        if (p) return invalid(`node.admit: ${p}`);
      }
      return null;
    }
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
      if (op.kind === 'instance.update' && b.rollbackOf !== undefined && b.release === undefined) {
        return invalid('instance.update: rollbackOf needs the release it makes');
      }
      if (op.kind === 'instance.update' && b.release !== undefined && b.formpackId === undefined) {
        return invalid('instance.update: a release names its formpackId');
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
    case 'instance.health': {
      // Only the node holding the replica reports its health: its own claim on the instance is cited.
      if (b.node !== op.author)
        return forbidden('instance.health: a node may only report the health of its own replica');
      const cl = findDep(deps, 'instance.claim', (d) => d.author === op.author && d.body.instanceId === b.instanceId);
      return cl ? null : forbidden(`instance.health: deps must include the author's instance.claim of ${b.instanceId}`);
    }
    case 'instance.commit': {
      // Only the owner makes a revision current: a node running a replica may offer one (to the
      // owner, out of band), never impose it. A claim grants nothing over content.
      const c = createOf(deps, b.instanceId);
      return c && actorOf(c) === a
        ? null
        : forbidden(
            `instance.commit: only the owner of instance ${b.instanceId} (or their delegation) may commit, citing its instance.create in deps`,
          );
    }
    case 'formnet.allocate': {
      // Only nodes allocate (views count only admitted ones): member addresses (nodes, developers) in
      // the member pool, instance addresses inside the allocating node's own slice (checked in views).
      if (!ipInFormnet(b.address as string))
        return invalid(`formnet.allocate: ${b.address} is outside ${FORMNET_CIDR}`);
      if (b.kind === 'instance' ? !/^[0-9a-f]{32}$/.test(b.peer as string) : !/^0[23]/.test(b.peer as string)) {
        return invalid('formnet.allocate: peer must be an instance id for kind instance, else a public key');
      }
      const inPool = cidrWithin(b.address as string, FORMNET_MEMBER_POOL);
      if (b.kind === 'instance' && inPool) {
        return invalid(`formnet.allocate: instance addresses lie in a node's slice, not in ${FORMNET_MEMBER_POOL}`);
      }
      if (b.kind !== 'instance' && !inPool) {
        return invalid(`formnet.allocate: ${b.kind} addresses lie in the member pool ${FORMNET_MEMBER_POOL}`);
      }
      if (!findDep(deps, 'node.register', (d) => d.author === op.author)) {
        return forbidden('formnet.allocate: only a node, naming its own node.register in deps, may allocate');
      }
      return null;
    }
    case 'dns.record': {
      if (!('instanceId' in b)) return null;
      const c = createOf(deps, b.instanceId);
      if (!c) return invalid(`dns.record: deps must include the instance.create of ${b.instanceId}`);
      return actorOf(c) === a ? null : forbidden(`dns.record: only the owner of instance ${b.instanceId} may name it`);
    }
    case 'dns.claim': {
      const c = createOf(deps, b.instanceId);
      if (!c) return invalid(`dns.claim: deps must include the instance.create of ${b.instanceId}`);
      if (actorOf(c) !== a)
        return forbidden(`dns.claim: only the owner of instance ${b.instanceId} may claim a domain for it`);
      return b.token === domainTokenOf(a, b.name as string, op.ts)
        ? null
        : invalid('dns.claim: token must be domainTokenOf(owner, name, ts)');
    }
    case 'port.claim': {
      const c = createOf(deps, b.instanceId);
      if (!c) return invalid(`port.claim: deps must include the instance.create of ${b.instanceId}`);
      if (actorOf(c) !== a)
        return forbidden(`port.claim: only the owner of instance ${b.instanceId} may claim a port for it`);
      const p = publicPortProblem(b.port as number);
      return p ? invalid(`port.claim: ${p}`) : null;
    }
    case 'port.release':
      return null; // about the author's own claim
    case 'port.granted': {
      if (!findDep(deps, 'node.register', (d) => d.author === op.author)) {
        return forbidden('port.granted: only a node, naming its own node.register in deps, may grant a port');
      }
      const cl = findDep(deps, 'port.claim', (d) => d.hash === b.claim);
      if (!cl) return invalid(`port.granted: deps must include the port.claim ${b.claim} it grants`);
      return cl.body.port === b.port
        ? null
        : invalid(`port.granted: claim ${b.claim} is for port ${cl.body.port}, not ${b.port}`);
    }
    case 'dns.verified':
    case 'dns.lapsed': {
      // Only a node vouches (its registration cited; views count admitted nodes only), and only for
      // the claim it cites: the name must be that claim's, so a verification cannot be moved.
      if (!findDep(deps, 'node.register', (d) => d.author === op.author)) {
        return forbidden(`${op.kind}: only a node, naming its own node.register in deps, may verify a domain`);
      }
      const cl = findDep(deps, 'dns.claim', (d) => d.hash === b.claim);
      if (!cl) return invalid(`${op.kind}: deps must include the dns.claim ${b.claim} it verifies`);
      if (cl.body.name !== b.name) return invalid(`${op.kind}: claim ${b.claim} is for ${cl.body.name}, not ${b.name}`);
      return null;
    }
  }
}
