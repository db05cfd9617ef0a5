import { createReadStream, statSync } from 'node:fs';
import { FormError } from '@formation/interface';
import { ErrorBodySchema } from '@formation/interface/error-schema';
import { type ApiServer, requireSigner, streamedBody } from '@formation/service';
import { Type } from '@sinclair/typebox';

/** What `GET /node` answers: what a developer tool on this host needs to attach a temporary peer. */
export const NodeInfoSchema = Type.Object({
  node: Type.String(),
  netns: Type.Union([Type.String(), Type.Null()]),
  wireguardPort: Type.Integer(),
  formnetAddress: Type.String(),
  instanceCidr: Type.String(),
  domain: Type.String(),
  dns: Type.Object({ host: Type.String(), port: Type.Integer() }),
  /** The node's public key: what its TLS certificate is bound to and clients pin. */
  nodeKey: Type.String(),
  /** Where the TLS APIs, libp2p and WireGuard listen for other hosts; null on a loopback-only node. */
  publicAddress: Type.Union([Type.String(), Type.Null()]),
});

// In constants: `summary` is an OpenAPI addition that the plain FastifySchema type lacks.
const NODE_INFO_SCHEMA = {
  summary: 'This node: namespace, WireGuard port, formnet address, DNS',
  response: { 200: NodeInfoSchema },
};
const REVISION_SCHEMA = {
  summary: 'Download a committed disk revision by its sha256 (signed by a registered node)',
  params: Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
  response: {
    200: {
      description: 'The qcow2 revision (x-form-sha256: its hash)',
      content: { 'application/octet-stream': { schema: streamedBody('binary') } },
    },
    401: ErrorBodySchema,
    403: ErrorBodySchema,
    404: ErrorBodySchema,
  },
};

export interface NodeRoutesOptions {
  /** This node, for `GET /node`. */
  info: () => import('@sinclair/typebox').Static<typeof NodeInfoSchema>;
  /** Whether `publicKey` is a registered node of the network (only they may fetch revisions). */
  isNode: (publicKey: string) => boolean;
  /** The file of the committed revision `sha256` on this node, or null when it has none. */
  revisionFile: (sha256: string) => string | null | undefined;
}

/**
 * The node's own routes on its formnet API: `GET /node` (this node, for `form ssh` and the dashboard)
 * and `GET /revisions/:sha256` (committed revisions for the nodes of the other replicas, signed).
 */
export function registerNodeRoutes(app: ApiServer, o: NodeRoutesOptions): void {
  app.get('/node', { schema: NODE_INFO_SCHEMA }, async () => o.info());
  app.get('/revisions/:sha256', { schema: REVISION_SCHEMA, preHandler: requireSigner() }, async (req, reply) => {
    const signer = req.signer?.publicKey;
    if (!signer || !o.isNode(signer)) {
      throw new FormError('AUTH_FORBIDDEN', 'Cannot serve a revision: only nodes of this network may fetch them');
    }
    const { sha256 } = req.params as { sha256: string };
    const file = o.revisionFile(sha256);
    if (!file) throw new FormError('NOT_FOUND', `Cannot find revision ${sha256.slice(0, 12)} on this node`);
    reply.header('content-length', statSync(file).size);
    reply.header('x-form-sha256', sha256);
    return reply.type('application/octet-stream').send(createReadStream(file));
  });
}
