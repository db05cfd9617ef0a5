import { ErrorBodySchema } from '@formation/interface/error-schema';
import type { NetworkInfo } from '@formation/interface/web-api';
import type { ApiServer } from '@formation/service';
import type { WebContext } from '../context.ts';
import { NetworkInfoSchema } from '../schemas.ts';
import { nodeSummary, peerSummaries, usedByNode } from '../views.ts';

/** Nodes, formnet peers and the load samples the BFF keeps. */
export function registerNetworkRoutes(app: ApiServer, ctx: WebContext): void {
  const { apis } = ctx;
  app.get(
    '/api/network',
    {
      schema: {
        summary: 'Nodes, formnet peers and load samples',
        response: { 200: NetworkInfoSchema, 401: ErrorBodySchema },
      },
    },
    async (req) => {
      ctx.session(req);
      const [nodes, peers, allocations, self, instances] = await Promise.all([
        apis.nodes(),
        apis.peers(),
        apis.allocations(),
        apis.self().catch(() => null),
        apis.instances(),
      ]);
      const used = usedByNode(instances);
      const out: NetworkInfo = {
        self,
        nodes: nodes.map((n) => nodeSummary(n, self?.node, used.get(n.id))),
        peers: peerSummaries(peers, nodes, allocations),
        samples: ctx.metrics.all(),
      };
      return out;
    },
  );
}
