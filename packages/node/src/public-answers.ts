// What the node's public DNS says (issue 19), as a pure function of the state views: a name the
// network serves resolves to the PUBLIC addresses of the live nodes whose ingress can carry it (every
// admitted node with a public endpoint: each ingress routes to any replica over formnet). Formnet
// addresses never leave: they mean nothing on the internet and would map the private network.
import { isIPv4 } from 'node:net';
import { FORMNET_CIDR } from '@formation/interface';
import { isNodeHealthy } from '@formation/scheduler';
import { cidrWithin, type StateStore } from '@formation/state';

type Views = ReturnType<StateStore['views']>;

/** At most this many addresses per answer (a resolver needs a few to fail over, not the whole network). */
export const MAX_PUBLIC_ANSWERS = 8;

export interface PublicAnswerOptions {
  /** The network's domain (lower case, no trailing dot). */
  domain: string;
  /** A node whose last heartbeat is older is not offered (the controller's `nodeTimeoutMs`). */
  nodeTimeoutMs: number;
  /** The answering node: it always counts itself live. */
  self?: string;
}

export type PublicAnswer =
  | { rcode: 'NOERROR'; addresses: string[] }
  | { rcode: 'NXDOMAIN' }
  /** Not a name this network answers for (another zone, or a custom domain not verified). */
  | { rcode: 'REFUSED' };

/** The host part of a node's registered endpoint when it is a public-looking IPv4 address, else null. */
export function publicHostOf(endpoint: string): string | null {
  const host = endpoint.replace(/:\d+$/, '');
  if (!isIPv4(host)) return null;
  if (cidrWithin(host, '127.0.0.0/8') || cidrWithin(host, '0.0.0.0/8') || cidrWithin(host, FORMNET_CIDR)) return null;
  return host;
}

/**
 * The answer to an A query for `fqdn` (any case, trailing dot allowed): under `domain`, the names in
 * the `dns` view (instance names; NXDOMAIN otherwise), answered with the live ingress nodes' public
 * addresses, sorted (`rotateAnswers` spreads them), or none (NODATA) when the instance declares no
 * EXPOSE'd port; outside `domain`, only custom domains whose claim is `verified` (else REFUSED).
 *
 * @example
 * publicAnswers(store.views(), 'hello.dev.formation.local', Date.now(), { domain, nodeTimeoutMs: 30_000 })
 * // { rcode: 'NOERROR', addresses: ['198.51.100.11', '198.51.100.12'] }
 */
export function publicAnswers(
  views: Pick<Views, 'nodes' | 'instances' | 'dns' | 'domains'>,
  fqdn: string,
  now: number,
  o: PublicAnswerOptions,
): PublicAnswer {
  const name = fqdn.toLowerCase().replace(/\.$/, '');
  const domain = o.domain.toLowerCase().replace(/\.$/, '');
  let instanceId: string | null | undefined;
  if (name === domain || name.endsWith(`.${domain}`)) {
    const rec = views.dns.find((d) => d.name === name);
    if (!rec) return { rcode: 'NXDOMAIN' };
    instanceId = rec.instanceId;
  } else {
    const claim = views.domains.find((d) => d.name === name && d.state === 'verified');
    if (!claim) return { rcode: 'REFUSED' };
    instanceId = claim.instanceId;
  }
  const inst = views.instances.find((i) => i.id === instanceId);
  const served = inst && !inst.deleted && (inst.formpack?.service?.expose.length ?? 0) > 0;
  if (!served) return { rcode: 'NOERROR', addresses: [] };
  const addresses = new Set<string>();
  for (const n of views.nodes) {
    const host = publicHostOf(n.endpoint);
    if (host && isNodeHealthy(n, now, o.nodeTimeoutMs, o.self)) addresses.add(host);
  }
  return { rcode: 'NOERROR', addresses: [...addresses].sort() };
}

/**
 * `addresses` rotated by `turn` and cut to `max`: successive answers start at a different node, so
 * resolvers that take the first address spread visitors over the ingress nodes.
 *
 * @example rotateAnswers(['a', 'b', 'c'], 1) // ['b', 'c', 'a']
 */
export function rotateAnswers(addresses: readonly string[], turn: number, max = MAX_PUBLIC_ANSWERS): string[] {
  if (addresses.length === 0) return [];
  const k = ((turn % addresses.length) + addresses.length) % addresses.length;
  return [...addresses.slice(k), ...addresses.slice(0, k)].slice(0, max);
}
