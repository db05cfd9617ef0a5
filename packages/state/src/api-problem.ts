import { FormError } from '@formation/interface';
import { actorOf, cidrsOverlap, rangeProblem } from './kinds.ts';
import type { Op } from './op.ts';
import { portClaimProblem } from './public-ports.ts';
import { DOMAIN_CLAIMS_PER_ACCOUNT, type ViewState } from './views.ts';

/**
 * Why the state API refuses a new op that the rules alone would accept, judged against what this
 * replica holds now (so it never decides what replicas converge to; gossip is judged by the rules):
 * a delegated op after its delegation's revocation (403), an instance name or explicit DNS name
 * another owner holds (409), a create beyond the account's instance quota (409), an admit
 * overlapping another admitted node's slice (409).
 * Returns a FormError or null; call it before `submit` for ops from clients.
 */
export function apiProblem(views: ViewState, input: unknown): FormError | null {
  if (typeof input !== 'object' || input === null) return null;
  const op = input as Partial<Op>;
  const b = (op.body ?? {}) as Record<string, unknown>;
  if (typeof op.author !== 'string' || typeof op.kind !== 'string') return null;
  const actor = actorOf({ author: op.author, body: b });
  if (b.onBehalfOf !== undefined && typeof op.ts === 'number') {
    const rev = views.revokedAt(actor, op.author);
    if (rev !== undefined && op.ts > rev) {
      return new FormError('STATE_OP_FORBIDDEN', 'Cannot accept a delegated op: its owner revoked this delegation', {
        hint: 'Sign in again (`form web login`) for a new session.',
      });
    }
  }
  if (op.kind === 'dns.claim' && typeof b.name === 'string') return domainClaimProblem(views, b.name, actor);
  if (op.kind === 'port.claim' && typeof b.port === 'number') return portClaimProblem(views.views(), b.port, actor);
  if (op.kind !== 'instance.create' && op.kind !== 'dns.record' && op.kind !== 'node.admit') return null;
  const v = views.views();
  if (op.kind === 'instance.create') {
    const other = v.instances.find((i) => !i.deleted && i.name === b.name && i.owner !== actor);
    if (other) {
      return new FormError(
        'CONFLICT',
        `Cannot create an instance named ${String(b.name)}: another owner holds the name ${String(b.name)}`,
        {
          hint: 'Pick another name (your own instances are also reachable as <name>.<your address>.<domain>).',
          details: { owner: other.ownerAddress },
        },
      );
    }
  }
  if (op.kind === 'instance.create') {
    const { instancesPerAccount } = v.network.quotas;
    const mine = v.instances.filter((i) => !i.deleted && i.owner === actor && !i.overQuota).length;
    if (mine >= instancesPerAccount) {
      return new FormError(
        'CONFLICT',
        `Cannot create an instance: the account already has ${mine} instances, its quota`,
        {
          hint: 'Delete an instance first (`form manage delete`), or ask the network admins for a larger quota.',
        },
      );
    }
  }
  if (op.kind === 'dns.record' && typeof b.name === 'string') {
    const rec = v.dns.find((d) => d.name === b.name);
    if (rec && rec.owner !== actor) {
      return new FormError('CONFLICT', `Cannot record DNS name ${b.name}: another owner holds it`);
    }
  }
  if (op.kind === 'node.admit' && typeof b.formnetRange === 'string' && !rangeProblem(b.formnetRange)) {
    const clash = v.nodes.find(
      (n) => n.id !== b.node && n.formnetRange && cidrsOverlap(n.formnetRange, b.formnetRange as string),
    );
    if (clash) {
      return new FormError(
        'CONFLICT',
        `Cannot admit a node with formnetRange ${b.formnetRange}: it overlaps node ${clash.id.slice(0, 12)}…'s ${clash.formnetRange}`,
        {
          hint: 'Give each node its own /24 (the first free one: see GET /nodes).',
        },
      );
    }
  }
  return null;
}

/**
 * Why `actor` may not claim the custom domain `name`: it lies in the network's own domain (those
 * names come from instances), or another owner holds it (an explicit record, or a verified claim).
 */
function domainClaimProblem(views: ViewState, name: string, actor: string): FormError | null {
  const domain = views.domain;
  if (name === domain || name.endsWith(`.${domain}`)) {
    return new FormError('STATE_OP_INVALID', `Cannot claim ${name}: it lies in the network's domain ${domain}`, {
      hint: `Names under ${domain} come from instance names; claim a domain you control (e.g. shop.example.com).`,
    });
  }
  const v = views.views();
  const mine = v.domains.filter((d) => d.owner === actor && d.name !== name).length;
  if (mine >= DOMAIN_CLAIMS_PER_ACCOUNT) {
    return new FormError('CONFLICT', `Cannot claim ${name}: the account already has ${mine} domain claims, the limit`, {
      hint: 'Release one first (`form dns rm <domain>`).',
    });
  }
  const rec = v.dns.find((d) => d.name === name && d.owner !== actor);
  const dom = v.domains.find((d) => d.name === name && d.owner !== actor && d.state !== 'pending');
  if (rec || dom) {
    return new FormError('CONFLICT', `Cannot claim ${name}: another owner holds it`, {
      hint: 'A domain verified for another account stays theirs until they release it (`form dns rm`).',
    });
  }
  return null;
}
