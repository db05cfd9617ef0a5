import { type KeyPair, NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { errorResponses } from '@formation/interface/error-schema';
import { ApiClient, type ApiServer, createApiServer, type Logger, requireSigner } from '@formation/service';
import { createOp } from '@formation/state';
import { Type } from '@sinclair/typebox';
import { FORMNET_CIDR } from './ipam.ts';
import { type FormnetMember, type FormnetStateAdapter, memberToPeer } from './members.ts';
import { formnetPeerOp } from './state-adapter.ts';
import { isWgKey, type WgPeer } from './wireguard.ts';

export const FORMNET_API_PORT = 3001;
export const WIREGUARD_PORT = 51820;
/** wireguard-go/kernel default for IPv4-over-IPv4 underlays. */
export const FORMNET_MTU = 1420;

/** A peer as the join API returns it. */
export interface JoinPeer extends WgPeer {
  id: string;
  kind: 'node' | 'developer';
  address: string;
}

export interface JoinResponse {
  /** The joiner's formnet address (bare IPv4). */
  address: string;
  member: FormnetMember;
  interface: {
    /** Address with prefix for `ip addr add`. */
    address: string;
    mtu: number;
    /** Route to mark `unreachable` (the leak guard). */
    network: string;
    dns?: { server: string; port: number; domain: string } | undefined;
  };
  peers: JoinPeer[];
}

export interface FormnetServiceOptions {
  state: FormnetStateAdapter;
  logger: Logger;
  /** DNS settings handed to joiners. */
  dns?: { server: string; port: number; domain: string };
  /** Decide who may join as what; throw `AUTH_FORBIDDEN` to refuse. Default: any signer as developer, nodes too. */
  authorize?: (signer: { address: string; publicKey: string }, kind: 'node' | 'developer') => void | Promise<void>;
  /** Called after membership changed (join/leave), e.g. to reconcile the local interface at once. */
  onChange?: (member: FormnetMember, change: 'join' | 'leave') => void | Promise<void>;
  nonces?: NonceCache;
}

const JoinBody = Type.Object(
  {
    wgPublicKey: Type.String({ description: 'base64 WireGuard public key', maxLength: 44 }),
    endpoint: Type.Optional(
      Type.String({ description: 'host:port where this member’s WireGuard listens', maxLength: 300 }),
    ),
    kind: Type.Optional(Type.Union([Type.Literal('developer'), Type.Literal('node')])),
    peerOp: Type.Optional(
      Type.Object({}, { additionalProperties: true, description: 'signed formnet.peer state op by the signer' }),
    ),
  },
  { additionalProperties: false },
);

const PeerSchema = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  address: Type.String(),
  publicKey: Type.String(),
  endpoint: Type.Optional(Type.String()),
  allowedIps: Type.Array(Type.String()),
  persistentKeepalive: Type.Optional(Type.Number()),
});

/** `FormnetMember` (open: a state adapter may keep more about a member). */
const MemberSchema = Type.Object(
  {
    id: Type.String(),
    kind: Type.String({ description: 'node | developer' }),
    wgPublicKey: Type.String(),
    address: Type.String(),
    endpoint: Type.Optional(Type.String()),
    slice: Type.Optional(Type.String()),
  },
  { additionalProperties: true },
);
/** `JoinResponse`. */
const JoinResponseSchema = Type.Object({
  address: Type.String(),
  member: MemberSchema,
  interface: Type.Object({
    address: Type.String(),
    mtu: Type.Integer(),
    network: Type.String(),
    dns: Type.Optional(Type.Object({ server: Type.String(), port: Type.Integer(), domain: Type.String() })),
  }),
  peers: Type.Array(PeerSchema),
});
const errors = errorResponses(400, 401, 403, 404);

// Held in a constant: `summary`/`security` are OpenAPI additions the plain FastifySchema type lacks.
const LEAVE_SCHEMA = {
  summary: 'Leave formnet (signed): removes the signer',
  security: [{ formSignature: [] }],
  body: Type.Object({ leaveOp: Type.Optional(Type.Unknown()) }, { additionalProperties: false }),
  response: { 200: Type.Object({ removed: Type.String() }), ...errors },
};

const PEERS_SCHEMA = {
  summary: 'Formnet members as WireGuard peers',
  response: { 200: Type.Object({ peers: Type.Array(PeerSchema) }) },
};

const ENDPOINT_RE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$/;

function toJoinPeer(m: FormnetMember): JoinPeer {
  return { id: m.id, kind: m.kind, address: m.address, ...memberToPeer(m) };
}

/**
 * The formnet join API (port 3001). `POST /join` is signed (the signer's address is the member
 * identity); the answer has the joiner's address, interface settings and every other member as a
 * WireGuard peer. `POST /leave` (signed) removes the signer. `GET /peers` lists members.
 *
 * @example
 * const app = await createFormnetService({ state: new MemoryFormnetState(), logger });
 * await app.listen({ host: '0.0.0.0', port: 3001 });
 */
export async function createFormnetService(opts: FormnetServiceOptions): Promise<ApiServer> {
  const app = await createApiServer({
    name: 'formnet',
    description: 'Join the formnet WireGuard mesh and list its members.',
    logger: opts.logger,
    bodyLimit: 64 * 1024,
  });
  const signed = requireSigner(opts.nonces ?? new NonceCache());
  const log = opts.logger.child({ component: 'formnet' });

  app.post(
    '/join',
    {
      preHandler: signed,
      schema: {
        summary: 'Join formnet (signed); returns the address, interface settings and peers',
        security: [{ formSignature: [] }],
        body: JoinBody,
        response: { 200: JoinResponseSchema, ...errors },
      },
    },
    async (req) => {
      const signer = req.signer!;
      const { wgPublicKey, endpoint } = req.body;
      const kind = req.body.kind ?? 'developer';
      if (!isWgKey(wgPublicKey)) {
        throw new FormError('BAD_REQUEST', 'Cannot join formnet: wgPublicKey is not a base64 WireGuard key', {
          hint: 'Send the output of `wg pubkey` (44 characters ending in =).',
        });
      }
      if (endpoint !== undefined) {
        const m = ENDPOINT_RE.exec(endpoint);
        if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
          throw new FormError(
            'BAD_REQUEST',
            `Cannot join formnet: endpoint ${JSON.stringify(endpoint)} is not host:port`,
          );
        }
      }
      await opts.authorize?.(signer, kind);
      const member = await opts.state.upsertMember({
        id: signer.address,
        publicKey: signer.publicKey,
        kind,
        wgPublicKey,
        endpoint,
        peerOp: req.body.peerOp,
      });
      const peers = (await opts.state.listMembers()).filter((m) => m.id !== member.id).map(toJoinPeer);
      log.info({ id: member.id, kind, address: member.address }, 'member joined formnet');
      await opts.onChange?.(member, 'join');
      const resp: JoinResponse = {
        address: member.address,
        member,
        interface: { address: `${member.address}/32`, mtu: FORMNET_MTU, network: FORMNET_CIDR, dns: opts.dns },
        peers,
      };
      return resp;
    },
  );

  app.post(
    '/leave',
    {
      preHandler: signed,
      schema: LEAVE_SCHEMA,
    },
    async (req) => {
      const id = req.signer!.address;
      const member = (await opts.state.listMembers()).find((m) => m.id === id);
      if (!member) throw new FormError('NOT_FOUND', `Cannot leave formnet: ${id} is not a member`);
      await opts.state.removeMember(id, (req.body as { leaveOp?: unknown } | undefined)?.leaveOp);
      log.info({ id }, 'member left formnet');
      await opts.onChange?.(member, 'leave');
      return { removed: id };
    },
  );

  app.get('/peers', { schema: PEERS_SCHEMA }, async () => ({
    peers: (await opts.state.listMembers()).map(toJoinPeer),
  }));

  return app;
}

/** A URL (a plain client is made) or a client the caller made, e.g. one that pins the node's TLS key. */
export type FormnetTarget = string | ApiClient;

function clientFor(target: FormnetTarget, key?: KeyPair): ApiClient {
  return typeof target === 'string' ? new ApiClient(target, key, 10_000) : target;
}

/**
 * Client side of `POST /join`: sign with the developer's or node's key.
 *
 * @example const j = await requestJoin('http://10.0.0.2:3001', key, { wgPublicKey });
 */
export async function requestJoin(
  target: FormnetTarget,
  key: KeyPair,
  body: { wgPublicKey: string; endpoint?: string; kind?: 'node' | 'developer'; peerOp?: unknown },
): Promise<JoinResponse> {
  // Always carry the signed formnet.peer op: state-backed nodes need it, others ignore it.
  const peerOp = body.peerOp ?? formnetPeerOp(key, body.wgPublicKey, body.endpoint);
  return clientFor(target, key).post<JoinResponse>('/join', { ...body, peerOp });
}

/** Client side of `POST /leave`. */
export async function requestLeave(target: FormnetTarget, key: KeyPair): Promise<void> {
  // Carry the signed formnet.leave op: state-backed nodes record it, others ignore it.
  await clientFor(target, key).post('/leave', { leaveOp: createOp(key, 'formnet.leave', {}, []) });
}

/**
 * Leave only while the node still lists `key`'s membership with `wgPublicKey`: a session that ended
 * late must not remove the membership a newer session or `form formnet up` made with the same
 * developer key. Returns whether a leave was sent.
 */
export async function leaveIfCurrent(target: FormnetTarget, key: KeyPair, wgPublicKey: string): Promise<boolean> {
  const client = clientFor(target, key);
  const { peers } = await client.get<{ peers: JoinPeer[] }>('/peers');
  const mine = peers.find((p) => p.id === key.address);
  if (!mine || mine.publicKey !== wgPublicKey) return false;
  await requestLeave(client, key);
  return true;
}
