import { getOrSet } from './maps.ts';
import { PORT_CLAIMS_PER_ACCOUNT, PORT_QUORUM } from './public-ports.ts';
import { type Body, byKey, type FoldState, type Lww, rankLess } from './views-fold.ts';
import {
  type ConflictView,
  type DnsRecordView,
  DOMAIN_CLAIMS_PER_ACCOUNT,
  DOMAIN_QUORUM,
  type DomainView,
  type InstanceView,
  type PortView,
} from './views-types.ts';

/** What the names are rendered from: the rendered instances, the admitted nodes and the conflict list. */
export interface NamesInput {
  instances: InstanceView[];
  admitted: Set<string>;
  nodeCount: number;
  conflict: (kind: ConflictView['kind'], key: string, parties: Iterable<string>) => void;
}

/** DNS records, custom domains and public ports of the rendered instances. */
export function renderNames(
  s: FoldState,
  domain: string,
  { instances, admitted, nodeCount, conflict }: NamesInput,
): { dns: DnsRecordView[]; domains: DomainView[]; ports: PortView[] } {
  // DNS. Every live instance gets <id>.<domain> and <name>.<owner address>.<domain> (the owner's
  // first instance of that name by (depth, hash): only the owner can make those). <name>.<domain>
  // resolves only while a single owner has live instances of that name; when two owners do, it is
  // withheld (contested: deniable, never hijackable) and listed in `conflicts`.
  const dns = new Map<string, DnsRecordView>();
  const live = instances.filter((i) => !i.deleted);
  // Addresses of running replicas, at most `replicas` of them: the first claims first, then the
  // claims that stand in for them (a healed replica on another node is reachable by name too).
  const ipsOf = (i: InstanceView) =>
    [
      ...new Set(
        i.replicaSet
          // A suspended replica keeps its name: the next connection to it wakes it (scale to zero).
          .filter((r) => (r.state === 'running' || r.state === 'suspended') && r.formnetIp)
          .sort((a, b) => Number(b.assigned) - Number(a.assigned))
          .slice(0, i.replicas)
          .map((r) => r.formnetIp as string),
      ),
    ].sort();
  const rankOf = (i: InstanceView) => ({ depth: s.instances.get(i.id)!.create!.depth, hash: i.createdBy });
  const byOwnerName = new Map<string, InstanceView>();
  const ownersOfName = new Map<string, Set<string>>();
  for (const i of live) {
    const k = `${i.name}.${i.ownerAddress.slice(2)}`;
    const cur = byOwnerName.get(k);
    if (!cur || rankLess(rankOf(i), rankOf(cur))) byOwnerName.set(k, i);
    getOrSet(ownersOfName, i.name, () => new Set()).add(i.owner);
  }
  const record = (name: string, i: InstanceView) =>
    dns.set(name, { name, source: 'instance', instanceId: i.id, addresses: ipsOf(i), owner: i.owner });
  for (const i of live) record(`${i.id}.${domain}`, i);
  for (const [k, i] of byOwnerName) {
    record(`${k}.${domain}`, i);
    const owners = ownersOfName.get(i.name) as Set<string>;
    if (owners.size === 1) record(`${i.name}.${domain}`, i);
  }
  for (const [name, owners] of ownersOfName) if (owners.size > 1) conflict('name', name, owners);
  // Explicit records: never under the derived domain; a name claimed by two keys is nobody's.
  const instById = new Map(instances.map((i) => [i.id, i]));
  for (const [name, d] of s.dnsExplicit) {
    if (dns.has(name) || name === domain || name.endsWith(`.${domain}`)) continue;
    if (d.byAuthor.size > 1) {
      conflict('dns', name, d.byAuthor.keys());
      continue;
    }
    const [[owner, lw]] = [...d.byAuthor.entries()] as [[string, Lww<Body>]];
    const rec = lw.value;
    if ('instanceId' in rec) {
      const i = instById.get(rec.instanceId as string);
      if (!i || i.deleted) continue;
      dns.set(name, { name, source: 'explicit', instanceId: i.id, addresses: ipsOf(i), owner });
    } else {
      dns.set(name, {
        name,
        source: 'explicit',
        instanceId: null,
        addresses: [...(rec.addresses as string[])].sort(),
        owner,
      });
    }
  }
  const dnsList = [...dns.values()].sort(byKey((d) => d.name));

  // Custom domains: a live claim (not released, its instance live and the claimer's) outside the
  // network's domain and not an explicit record of another owner; verified by DOMAIN_QUORUM
  // distinct admitted nodes (1 when only one is admitted); two owners verified = contested.
  const quorum = Math.max(1, Math.min(DOMAIN_QUORUM, nodeCount));
  type Live = { name: string; owner: string; ts: number; hash: string; instanceId: string; token: string };
  const liveByOwner = new Map<string, Live[]>();
  for (const [name, byActor] of s.domainClaims) {
    if (name === domain || name.endsWith(`.${domain}`)) continue;
    const held = dns.get(name);
    for (const [owner, lw] of byActor) {
      const c = lw.value;
      const i = c ? instById.get(c.instanceId) : undefined;
      if (!c || !i || i.deleted || i.owner !== owner || (held && held.owner !== owner)) continue;
      getOrSet(liveByOwner, owner, () => []).push({ name, owner, ts: lw.ts, hash: lw.hash, ...c });
    }
  }
  const byName = new Map<string, DomainView[]>();
  for (const list of liveByOwner.values()) {
    list.sort((x, y) => x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0));
    for (const x of list.slice(0, DOMAIN_CLAIMS_PER_ACCOUNT)) {
      const said = [...(s.domainVerified.get(x.hash) ?? new Map()).entries()]
        .filter(([node]) => admitted.has(node))
        .sort(byKey(([node]) => node));
      const verifiedBy = said.flatMap(([node, v]) => ('method' in v.value ? [{ node, method: v.value.method }] : []));
      const lapsedBy = said.flatMap(([node, v]) =>
        'reason' in v.value ? [{ node, reason: v.value.reason, ts: v.ts }] : [],
      );
      // Lapsed takes the same quorum as verified, and more nodes saying "gone" than "still there":
      // two nodes cannot take down a domain that the rest still see.
      const state: DomainView['state'] =
        lapsedBy.length >= quorum && lapsedBy.length > verifiedBy.length
          ? 'lapsed'
          : verifiedBy.length >= quorum
            ? 'verified'
            : 'pending';
      getOrSet(byName, x.name, () => []).push({
        name: x.name,
        instanceId: x.instanceId,
        owner: x.owner,
        token: x.token,
        claim: x.hash,
        state,
        verifiedBy,
        lapsedBy,
      });
    }
  }
  const domains: DomainView[] = [];
  for (const [name, list] of byName) {
    const winners = list.filter((d) => d.state === 'verified');
    if (winners.length > 1) {
      for (const d of winners) d.state = 'contested';
      conflict(
        'domain',
        name,
        winners.map((d) => d.owner),
      );
    }
    domains.push(...list);
  }
  domains.sort(byKey((d) => `${d.name}/${d.owner}`));
  const ports = renderPorts(s, instById, admitted, Math.max(1, Math.min(PORT_QUORUM, nodeCount)));
  return { dns: dnsList, domains, ports };
}

/**
 * Port claims: each account's live claims (not released, its instance live and its own), the first
 * PORT_CLAIMS_PER_ACCOUNT by (ts, hash); granted = `quorum` distinct admitted nodes granted it; per
 * port the first granted claim by (ts, hash) is `active`. Honest nodes grant a port only while no
 * other claim holds it, so a claim backdated to jump ahead of a held port gets no grants.
 */
function renderPorts(
  s: FoldState,
  instById: Map<string, InstanceView>,
  admitted: Set<string>,
  quorum: number,
): PortView[] {
  type Live = { port: number; owner: string; ts: number; hash: string; instanceId: string; target: number };
  const byOwner = new Map<string, Live[]>();
  for (const [port, byActor] of s.portClaims) {
    for (const [owner, lw] of byActor) {
      const c = lw.value;
      const i = c ? instById.get(c.instanceId) : undefined;
      if (!c || !i || i.deleted || i.owner !== owner) continue;
      getOrSet(byOwner, owner, () => []).push({ port, owner, ts: lw.ts, hash: lw.hash, ...c });
    }
  }
  const order = (x: { ts: number; hash: string }, y: { ts: number; hash: string }) =>
    x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0);
  const counted: Array<Live & { grantedBy: string[] }> = [];
  for (const list of byOwner.values()) {
    list.sort(order);
    for (const x of list.slice(0, PORT_CLAIMS_PER_ACCOUNT)) {
      const grantedBy = [...(s.portGrants.get(x.hash) ?? [])].filter((n) => admitted.has(n)).sort();
      counted.push({ ...x, grantedBy });
    }
  }
  counted.sort(order);
  const holder = new Map<number, string>();
  for (const x of counted) if (x.grantedBy.length >= quorum && !holder.has(x.port)) holder.set(x.port, x.hash);
  return counted
    .map(
      (x): PortView => ({
        port: x.port,
        instanceId: x.instanceId,
        owner: x.owner,
        target: x.target,
        claim: x.hash,
        ts: x.ts,
        state: holder.get(x.port) === x.hash ? 'active' : x.grantedBy.length >= quorum ? 'taken' : 'pending',
        grantedBy: x.grantedBy,
      }),
    )
    .sort(byKey((p) => `${String(p.port).padStart(5, '0')}/${p.owner}`));
}
