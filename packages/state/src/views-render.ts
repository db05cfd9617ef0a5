import { addressOf as deriveAddress } from '@formation/identity';
import type { GpuDevice, GpuRequest } from '@formation/interface';
import { cidrWithin } from './kinds.ts';
import { getOrSet } from './maps.ts';
import { type ReleaseRecord, releaseState } from './releases.ts';
import { type Body, byKey, type FoldState, type Lww, type NodeState, type Resources, rankLess } from './views-fold.ts';
import { renderNames } from './views-names.ts';
import {
  type AccountView,
  type AdmissionPolicy,
  type AllocationView,
  type ConflictView,
  DEFAULT_QUOTAS,
  type FormnetPeerView,
  type FormpackService,
  type FormpackView,
  type InstanceView,
  type NetworkView,
  type NodeView,
  type Quotas,
  type ReplicaHealthView,
  type ReplicaView,
  type Views,
} from './views-types.ts';

// Rendering: the folded state (views-fold.ts) to the public views, with the rules that join several
// entities (admission, slice and key conflicts, quotas, replica assignment, releases, formnet peers);
// names (DNS, custom domains, public ports) in views-names.ts.

const addresses = new Map<string, string>();
/** addressOf with a cache: rendering views derives many addresses, each a point decompression + keccak. */
function addressOf(publicKey: string): string {
  let a = addresses.get(publicKey);
  if (a === undefined) {
    a = deriveAddress(publicKey);
    if (addresses.size > 100_000) addresses.clear();
    addresses.set(publicKey, a);
  }
  return a;
}

function healthOf(h: Lww<Body> | undefined): ReplicaHealthView | null {
  if (!h) return null;
  const v = h.value;
  return {
    status: v.status as ReplicaHealthView['status'],
    release: v.release as number,
    reason: (v.reason as string | undefined) ?? null,
    ts: h.ts,
  };
}

/** The public views of `s` for a network under `domain` following `genesis` (none: legacy-open). */
export function renderViews(s: FoldState, domain: string, genesis: string | undefined): Views {
  const f = <T>(m: Map<string, Lww<unknown>>, k: string, dflt: T): T => (m.has(k) ? (m.get(k)!.value as T) : dflt);
  const conflicts: ConflictView[] = [];
  const conflict = (kind: ConflictView['kind'], key: string, parties: Iterable<string>) =>
    conflicts.push({ kind, key, parties: [...new Set(parties)].sort() });

  // The network: only the genesis this store follows counts (never decided by rank).
  const g = genesis;
  const init = g ? s.inits.get(g) : undefined;
  const policy: AdmissionPolicy = !g ? 'legacy-open' : init?.admission === 'open' ? 'open' : 'admins';
  const quotas: Quotas = { ...DEFAULT_QUOTAS, ...((init?.quotas as Quotas | undefined) ?? {}) };

  // Nodes: admitted ones only. In `admins`, admitted = the latest of node.admit / node.remove is an
  // admit, and the slice is the admit's; otherwise any registered node, with its registered slice.
  const candidates: Array<{ id: string; n: NodeState; range: string }> = [];
  const pending: string[] = [];
  for (const [id, n] of s.nodes) {
    if (!n.registered) continue;
    if (policy === 'admins') {
      const adm = s.admission.get(id)?.value;
      if (!adm?.admitted) {
        pending.push(id);
        continue;
      }
      candidates.push({ id, n, range: adm.formnetRange ?? '' });
    } else {
      candidates.push({ id, n, range: f(n.fields, 'formnetRange', '') });
    }
  }
  pending.sort();
  const admitted = new Set(candidates.map((c) => c.id));
  // Two admitted nodes with the same (or an overlapping) slice: both lose routing. Slices are aligned
  // /24s, so overlapping = equal. Same for a WireGuard key held by two nodes.
  const holders = <T>(items: T[], key: (t: T) => string) => {
    const m = new Map<string, string[]>();
    for (const it of items) {
      const k = key(it);
      if (k) getOrSet(m, k, () => []).push((it as { id: string }).id);
    }
    return m;
  };
  const lostRange = new Set<string>();
  for (const [range, ids] of holders(candidates, (c) => c.range)) {
    if (ids.length > 1) {
      conflict('formnetRange', range, ids);
      for (const id of ids) lostRange.add(id);
    }
  }
  const nodeWg = new Map<string, string>(); // wg key -> node id (unique ones)
  const lostWg = new Set<string>();
  for (const [wg, ids] of holders(candidates, (c) => f(c.n.fields, 'wgPublicKey', ''))) {
    if (ids.length > 1) {
      conflict('wgPublicKey', wg, ids);
      for (const id of ids) lostWg.add(id);
    } else nodeWg.set(wg, ids[0] as string);
  }
  const rangeOf = new Map<string, string>();
  const nodes: NodeView[] = [];
  for (const { id, n, range } of candidates) {
    const hb = n.heartbeat;
    const formnetRange = lostRange.has(id) ? '' : range;
    if (formnetRange) rangeOf.set(id, formnetRange);
    nodes.push({
      id,
      admitted: true,
      address: addressOf(id),
      name: f(n.fields, 'name', null),
      capacity: f(n.fields, 'capacity', { vcpu: 0, memMiB: 0, diskGiB: 0 }),
      gpus: f(n.fields, 'gpus', [] as GpuDevice[]),
      endpoint: f(n.fields, 'endpoint', ''),
      p2pPeerId: f(n.fields, 'p2pPeerId', ''),
      wgPublicKey: lostWg.has(id) ? '' : f(n.fields, 'wgPublicKey', ''),
      formnetRange,
      registeredBy: n.registered!.hash,
      heartbeat: hb
        ? { ts: hb.ts, status: hb.value.status as string, used: (hb.value.used as Resources | undefined) ?? null }
        : null,
    });
  }
  nodes.sort(byKey((n) => n.id));
  // Keys that registered as nodes but are not admitted: none of their node-kind ops count.
  const unadmittedNodes = new Set(pending);

  const accounts: AccountView[] = [...s.authors].sort().map((pk) => ({
    publicKey: pk,
    address: addressOf(pk),
    name: f(s.accounts.get(pk) ?? new Map(), 'name', null),
  }));

  const formpacks: FormpackView[] = [...s.formpacks.values()]
    .map((p) => ({
      id: p.value.body.id as string,
      name: p.value.body.name as string,
      owner: p.value.body.owner as string,
      sha256s: p.value.body.sha256s as Record<string, string>,
      size: p.value.body.size as number,
      publishedBy: p.hash,
      service: (p.value.body.service as FormpackService | undefined) ?? null,
    }))
    .sort(byKey((p) => `${p.id}/${p.owner}`));
  const packOf = new Map(formpacks.map((p) => [`${p.owner}/${p.id}`, p]));

  // Quotas: each account's live instances in (create ts, hash) order; one counts while the account
  // is within both its instance and its replica quota, else it is `overQuota` (and never placed).
  const overQuota = new Set<string>();
  const byOwner = new Map<string, Array<{ id: string; ts: number; hash: string; replicas: number }>>();
  for (const [id, i] of s.instances) {
    if (!i.create || i.deleted) continue;
    const c = i.create.value;
    getOrSet(byOwner, c.author, () => []).push({
      id,
      ts: c.ts,
      hash: i.create.hash,
      replicas: f(i.fields, 'replicas', c.body.replicas as number),
    });
  }
  for (const list of byOwner.values()) {
    list.sort((x, y) => x.ts - y.ts || (x.hash < y.hash ? -1 : x.hash > y.hash ? 1 : 0));
    let count = 0;
    let replicas = 0;
    for (const x of list) {
      if (count + 1 > quotas.instancesPerAccount || replicas + x.replicas > quotas.replicasPerAccount) {
        overQuota.add(x.id);
        continue;
      }
      count++;
      replicas += x.replicas;
    }
  }

  const instances: InstanceView[] = [];
  for (const [id, i] of s.instances) {
    if (!i.create) continue;
    const c = i.create.value;
    const replicas = f(i.fields, 'replicas', c.body.replicas as number);
    const over = overQuota.has(id);
    // Claims and reports count only from admitted nodes.
    const claims = [...i.claims.entries()]
      .filter(([node]) => admitted.has(node))
      .map(([node, cl]) => ({ node, ...cl }))
      .sort((x, y) => (rankLess(x, y) ? -1 : rankLess(y, x) ? 1 : 0));
    const replicaSet: ReplicaView[] = claims.map((cl, idx) => {
      const s = i.status.get(cl.node);
      // A node reports addresses in its own slice only (else DNS could point at someone else's).
      const ip = s?.value.formnetIp as string | undefined;
      const range = rangeOf.get(cl.node);
      return {
        node: cl.node,
        claimedBy: cl.hash,
        assigned: !over && idx < replicas,
        state: (s?.value.state as string | undefined) ?? null,
        formnetIp: ip !== undefined && range !== undefined && cidrWithin(ip, range) ? ip : null,
        revision: (s?.value.revision as number | undefined) ?? null,
        reason: (s?.value.reason as string | undefined) ?? null,
        ts: s?.ts ?? null,
        release: (s?.value.release as number | undefined) ?? null,
        health: healthOf(i.health?.get(cl.node)),
      };
    });
    // Releases (releases.ts): release 1 is the create; the target is the latest unless its roll-out failed.
    const createResources = c.body.resources as Resources;
    const recs: ReleaseRecord[] = [
      {
        release: 1,
        formpackId: c.body.formpackId as string,
        resources: createResources,
        ts: c.ts,
        actor: c.author,
        op: i.create.hash,
        rollbackOf: null,
      },
      ...[...(i.releases?.values() ?? [])].map((r) => ({
        ...r.value,
        resources: r.value.resources.vcpu === 0 ? createResources : r.value.resources,
      })),
    ];
    const rel = releaseState({
      releases: recs,
      latest: f(i.fields, 'release', 1),
      evidence: [...(i.failures?.entries() ?? [])]
        .filter(([k, e]) => {
          if (!k.endsWith('/unhealthy')) return true;
          const ok = i.healthyAt?.get(`${e.release}/${e.node}`);
          return ok === undefined || e.ts < ok;
        })
        .map(([, e]) => e),
      counted: new Set(replicaSet.map((r) => r.node)),
      replicas: replicaSet
        .filter((r) => r.assigned)
        .map((r) => ({ node: r.node, state: r.state, release: r.release ?? null })),
    });
    const targetRec = rel.target === f(i.fields, 'release', 1) ? undefined : recs.find((r) => r.release === rel.target);
    const formpackId = targetRec?.formpackId ?? f(i.fields, 'formpackId', c.body.formpackId as string);
    const pack = packOf.get(`${addressOf(c.author)}/${formpackId}`);
    instances.push({
      id,
      owner: c.author,
      ownerAddress: addressOf(c.author),
      name: c.body.name as string,
      formpackId,
      replicas,
      resources: targetRec?.resources ?? f(i.fields, 'resources', c.body.resources as Resources),
      gpu: f(i.fields, 'gpu', (c.body.gpu as GpuRequest | undefined) ?? null),
      desired: f(i.fields, 'desired', 'running' as 'running' | 'stopped'),
      autostopMinutes: f(i.fields, 'autostopMinutes', 0),
      wakeAt: f(i.fields, 'wakeAt', 0),
      createdBy: i.create.hash,
      deleted: i.deleted !== undefined,
      revision: i.commit?.revision ?? 0,
      revisionHash: i.commit?.value ?? null,
      revisionAt: i.commit?.ts ?? null,
      formpack: pack
        ? {
            name: pack.name,
            sha256s: pack.sha256s,
            size: pack.size,
            publishedBy: pack.publishedBy,
            service: pack.service,
          }
        : null,
      overQuota: over,
      replicaSet,
      release: rel.target,
      maxUnavailable: f(i.fields, 'maxUnavailable', 1),
      releases: rel.releases,
    });
  }
  instances.sort(byKey((i) => i.id));

  // Allocations: only admitted nodes allocate; an instance address must lie in the allocating node's
  // own slice (so only the slice's holder can allocate there). Candidates for one address by one
  // node, or naming one peer: the first (depth, hash). Several nodes naming different peers (only
  // possible in the member pool): contested, nobody gets it.
  const allocations: AllocationView[] = [];
  for (const [address, byNode] of s.allocations) {
    const valid = [...byNode.values()].filter((x) => {
      if (!admitted.has(x.value.author)) return false;
      if (x.value.body.kind !== 'instance') return true;
      const r = rangeOf.get(x.value.author);
      return r !== undefined && cidrWithin(address, r);
    });
    if (valid.length === 0) continue;
    const peers = new Set(valid.map((x) => x.value.body.peer as string));
    if (peers.size > 1) {
      conflict('address', address, peers);
      continue;
    }
    const w = valid.reduce((best, x) => (rankLess(x, best) ? x : best));
    allocations.push({
      address,
      peer: w.value.body.peer as string,
      kind: w.value.body.kind as string,
      allocatedBy: w.value.author,
      op: w.hash,
    });
  }
  allocations.sort(byKey((x) => x.address));

  // Formnet peers: not unadmitted nodes; allowedIps only what the peer holds (its allocations, its
  // slice); a WireGuard key used by two keys (or by a peer and another node) is nobody's.
  const held = new Map<string, string[]>();
  for (const x of allocations) if (x.kind !== 'instance') getOrSet(held, x.peer, () => []).push(`${x.address}/32`);
  for (const [id, r] of rangeOf) getOrSet(held, id, () => []).push(r);
  const activePeers = [...s.peers.entries()].filter(
    ([pk, m]) => !unadmittedNodes.has(pk) && f(m, 'active', false) && f(m, 'wgPublicKey', '') !== '',
  );
  const wgUsers = new Map<string, Set<string>>();
  for (const [pk, m] of activePeers) getOrSet(wgUsers, f(m, 'wgPublicKey', ''), () => new Set()).add(pk);
  for (const [wg, node] of nodeWg) getOrSet(wgUsers, wg, () => new Set()).add(node);
  const formnetPeers: FormnetPeerView[] = [];
  for (const [pk, m] of activePeers) {
    const wg = f(m, 'wgPublicKey', '');
    const users = wgUsers.get(wg) as Set<string>;
    // An admitted node's registered key is the node's; otherwise a key shared by two is nobody's.
    const holder = nodeWg.get(wg);
    if (holder !== undefined ? holder !== pk : users.size > 1 || lostWg.has(pk)) continue;
    const mine = held.get(pk) ?? [];
    formnetPeers.push({
      publicKey: pk,
      wgPublicKey: wg,
      endpoint: f<string | null>(m, 'endpoint', null),
      allowedIps: f<string[]>(m, 'allowedIps', []).filter((ip) => mine.some((h) => cidrWithin(ip, h))),
    });
  }
  for (const [wg, users] of wgUsers)
    if (wg && users.size > 1 && !nodeWgConflict(conflicts, wg)) conflict('wgPublicKey', wg, users);
  formnetPeers.sort(byKey((p) => p.publicKey));

  const {
    dns: dnsList,
    domains,
    ports,
  } = renderNames(s, domain, { instances, admitted, nodeCount: nodes.length, conflict });
  conflicts.sort(byKey((c) => `${c.kind}/${c.key}`));

  const network: NetworkView = {
    genesis: g ?? null,
    name: (init?.name as string | undefined) ?? null,
    policy,
    admins: [...((init?.admins as string[] | undefined) ?? [])].sort(),
    quotas,
    pending,
  };
  return {
    network,
    conflicts,
    nodes,
    accounts,
    formpacks,
    instances,
    formnetPeers,
    allocations,
    dns: dnsList,
    domains,
    ports,
  };
}

function nodeWgConflict(conflicts: ConflictView[], wg: string): boolean {
  return conflicts.some((c) => c.kind === 'wgPublicKey' && c.key === wg);
}
