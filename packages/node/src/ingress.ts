// The node's public door (issue 19): the ingress of @formation/ingress on the node's public address,
// fed from state. Which host names reach which instance, which replicas may take traffic and what the
// guest ports are all come from the signed op log (the owner's publish declares EXPOSE and HEALTHCHECK),
// so every node routes the same way whichever one a visitor reached.

import { request } from 'node:http';
import type { AcmeSettings } from '@formation/attest';
import type { KeyPair } from '@formation/identity';
import {
  ACME_RELAY_HEADER,
  buildRouteTable,
  buildTcpRouteTable,
  createProber,
  type Dialer,
  type Ingress,
  netTransport,
  type ProbeTarget,
  type RouteInput,
  type RouteTable,
  startIngress,
  type TcpRouteTable,
} from '@formation/ingress';
import type { Logger } from '@formation/service';
import { cidrWithin, type StateStore } from '@formation/state';
import { followState } from './follow-state.ts';
import { type IngressCertificates, startIngressCertificates } from './ingress-tls.ts';
import { netnsDialer } from './netns-dialer.ts';
import { startPortGranter } from './port-grants.ts';
import { publicHostOf } from './public-answers.ts';

type Views = ReturnType<StateStore['views']>;

export interface IngressPlan {
  instances: RouteInput['instances'];
  /** Replicas with a HEALTHCHECK the prober runs. */
  probes: ProbeTarget[];
}

/** The replica id the ingress and the prober use: stable while the replica stays on its node. */
export const replicaKey = (instanceId: string, node: string): string => `${instanceId}/${node}`;

/**
 * The verdict of the node holding a replica (instance.health, for the release the replica runs) takes
 * it out of rotation when `unhealthy`; for a CMD check, which only that node can run (through the guest
 * agent), also until its first pass (`starting`). HTTP/TCP checks are run by this ingress's own prober
 * as well. A node can only say this of its own replica, so a lie takes out nothing but its own.
 */
function heldOutByVerdict(
  r: { health?: { status: string; release: number } | null; release?: number | null },
  cmd: boolean,
): boolean {
  const v = r.health;
  if (!v || (r.release != null && v.release !== r.release)) return false;
  return v.status === 'unhealthy' || (cmd && v.status === 'starting');
}

/**
 * From state views to what the ingress routes (pure): every live, running-desired instance whose
 * owner published service metadata, under its DNS names (made absolute in `domain`), with its running
 * replicas' formnet addresses; replicas with an HTTP/TCP HEALTHCHECK become probe targets (started at
 * their last report, else `now`). Instances without a publish or without EXPOSE'd ports get no route.
 *
 * @example
 * ingressPlan(store.views(), 'dev.formation.local', Date.now()).instances[0].hosts // ['web.dev.formation.local']
 */
export function ingressPlan(
  views: Pick<Views, 'instances' | 'dns'> & Partial<Pick<Views, 'domains' | 'ports'>>,
  domain: string,
  now: number,
): IngressPlan {
  const instances: IngressPlan['instances'][number][] = [];
  const probes: ProbeTarget[] = [];
  const suffix = `.${domain}`;
  for (const inst of views.instances) {
    const service = inst.formpack?.service;
    // Plain TCP mappings this instance holds (a quorum granted them: state `active`).
    const tcp = (views.ports ?? [])
      .filter((p) => p.instanceId === inst.id && p.state === 'active')
      .map((p) => ({ public: p.port, target: p.target }));
    if (inst.deleted || inst.desired !== 'running' || inst.overQuota || !service) continue;
    if (service.expose.length === 0 && tcp.length === 0) continue;
    const hosts = views.dns
      .filter((r) => r.instanceId === inst.id)
      .map((r) => (r.name.endsWith(suffix) || r.name === domain ? r.name : `${r.name}${suffix}`).toLowerCase());
    // Custom domains route only once verified (a pending or contested one stays an unknown host).
    for (const d of views.domains ?? []) if (d.instanceId === inst.id && d.state === 'verified') hosts.push(d.name);
    const hc = service.healthcheck;
    const ingressTls = service.ingressTls;
    const checkable = hc !== undefined && hc.test.type !== 'cmd';
    const replicas = inst.replicaSet
      .filter((r) => r.assigned !== false)
      .map((r) => ({
        id: replicaKey(inst.id, r.node),
        address: r.formnetIp,
        // A suspended replica is routed: its node holds the connection while it resumes (scale to zero).
        running: (r.state === 'running' || r.state === 'suspended') && !heldOutByVerdict(r, hc?.test.type === 'cmd'),
        awake: r.state === 'running',
        ts: r.ts,
      }));
    instances.push({
      id: inst.id,
      hosts: [...new Set(hosts)],
      expose: service.expose,
      healthchecked: checkable,
      replicas: replicas.map(({ id, address, running }) => ({ id, address, running })),
      ...(tcp.length > 0 ? { tcp } : {}),
      ...(ingressTls ? { ingressTls } : {}),
    });
    if (checkable) {
      for (const r of replicas) {
        if (r.awake && r.address)
          probes.push({ replicaId: r.id, address: r.address, startedAt: r.ts ?? now, spec: hc });
      }
    }
  }
  return { instances, probes };
}

export interface NodeIngressOptions {
  host: string;
  /** 0 disables that listener. */
  httpPort: number;
  tlsPort: number;
  store: Pick<StateStore, 'views' | 'onAccepted'> & Partial<Pick<StateStore, 'author'>>;
  domain: string;
  logger: Logger;
  /** How often the table is rebuilt besides on accepted ops (ms). */
  refreshMs?: number;
  /**
   * Plain TCP mappings (state `ports`): listened on at `host` when given. `reservedPorts` are this
   * node's own ports (APIs with their offset, WireGuard, DNS...): never opened, whatever the state says.
   */
  tcp?: { reservedPorts: ReadonlySet<number> };
  /** The node's key: with it, this node also grants port claims (port.granted). */
  key?: KeyPair;
  /**
   * The node's namespace (`--netns`): replicas are dialed from inside it (proxy, prober, TCP mappings),
   * never from this process's namespace, where formnet would leave by the default route.
   */
  netns?: string | null;
  /** Or a dialer of the caller's (tests); `netns` wins. */
  dial?: Dialer;
  /**
   * TLS ended here for `HTTPS <port> TERMINATE=ingress` instances: certificates by ACME (HTTP-01 on
   * this ingress's :80), keys under `dir` (0600). Without it such instances get no HTTPS here.
   */
  tlsTermination?: { dir: string; acme: AcmeSettings; retryMs?: number };
}

export interface NodeIngress {
  ingress: Ingress;
  /** The current table (for status and tests). */
  table(): RouteTable;
  tcpTable(): TcpRouteTable;
  /** Held ports this node does not serve, and why (one of its own ports, in use, no right). */
  tcpProblems(): Array<{ port: number; error: string }>;
  /** Certificates for TLS ended here (when `tlsTermination` is on). */
  certificates?: IngressCertificates;
  close(): Promise<void>;
}

/** Private, shared, link-local, multicast and reserved IPv4 ranges: never a relay target. */
const NOT_PUBLIC = ['10.0.0.0/8', '100.64.0.0/10', '169.254.0.0/16', '172.16.0.0/12', '192.168.0.0/16', '224.0.0.0/3'];

/**
 * Where a challenge is relayed: the other registered nodes' public addresses (a node's endpoint host,
 * never loopback, formnet, private, link-local or multicast — a node's registration must not make
 * every ingress send requests into its own LAN), without `self`. Pure.
 *
 * @example relayPeers([{ endpoint: '198.51.100.12:3001' }, { endpoint: '192.168.1.5:3001' }], '198.51.100.11') // ['198.51.100.12']
 */
export function relayPeers(nodes: ReadonlyArray<{ endpoint: string }>, self: string): string[] {
  const out = new Set<string>();
  for (const n of nodes) {
    const h = publicHostOf(n.endpoint);
    if (h && h !== self && !NOT_PUBLIC.some((c) => cidrWithin(h, c))) out.add(h);
  }
  return [...out].sort();
}

/** Challenge relays to other nodes in flight at once (more are routed like any request). */
const RELAYS_IN_FLIGHT = 8;

/**
 * GET a challenge answer from one peer's ingress (marked relayed, so it is not relayed again): the key
 * authorization when the peer holds the token (`<token>.<43 base64url>`), else undefined.
 */
function askPeer(peer: string, port: number, host: string, token: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: peer,
        port,
        path: `/.well-known/acme-challenge/${token}`,
        headers: { host, [ACME_RELAY_HEADER]: '1', connection: 'close' },
        agent: false,
        timeout: 2000,
      },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => {
          body += c;
          if (body.length > 256) req.destroy();
        });
        res.on('end', () => {
          const ok = res.statusCode === 200 && new RegExp(`^${token}\\.[A-Za-z0-9_-]{43}$`).test(body);
          resolve(ok ? body : undefined);
        });
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** Start the ingress on the node's public address, its table rebuilt on every accepted op and on a timer. */
export async function startNodeIngress(o: NodeIngressOptions): Promise<NodeIngress> {
  let table: RouteTable = new Map();
  let tcpTable: TcpRouteTable = new Map();
  let tcpProblems: Array<{ port: number; error: string }> = [];
  let plan: IngressPlan = { instances: [], probes: [] };
  let ingress: Ingress | undefined;
  const dialer = o.netns ? netnsDialer(o.netns, o.logger) : undefined;
  const dial = dialer?.dial ?? o.dial;
  // HTTP-01 for another node's order (each ingress node orders its own certificate; the CA's check may
  // reach any node the name resolves to): ask the other nodes' ingress on their public address, at most
  // RELAYS_IN_FLIGHT at once (a visitor cannot make this node flood its peers), 2 s each.
  let relaysInFlight = 0;
  const relayChallenge = async (host: string, token: string): Promise<string | undefined> => {
    if (relaysInFlight >= RELAYS_IN_FLIGHT || !o.httpPort) return undefined;
    const peers = relayPeers(o.store.views().nodes ?? [], o.host);
    if (peers.length === 0) return undefined;
    relaysInFlight++;
    try {
      const answers = await Promise.all(peers.map((p) => askPeer(p, o.httpPort, host, token)));
      return answers.find((a) => a !== undefined);
    } finally {
      relaysInFlight--;
    }
  };
  const certs = o.tlsTermination
    ? startIngressCertificates({
        dir: o.tlsTermination.dir,
        acme: o.tlsTermination.acme,
        logger: o.logger,
        ...(o.tlsTermination.retryMs ? { retryMs: o.tlsTermination.retryMs } : {}),
      })
    : undefined;
  const prober = createProber({
    logger: o.logger,
    onChange: () => rebuildTable(),
    ...(dial ? { transport: netTransport({ dial }) } : {}),
  });
  const rebuildTable = () => {
    table = buildRouteTable({ instances: plan.instances, health: (id) => prober.status(id) });
    if (o.tcp) tcpTable = buildTcpRouteTable({ instances: plan.instances, health: (id) => prober.status(id) });
  };
  // Listeners follow the held ports (not their health: a mapping with no healthy replica closes each
  // connection at once, which a client sees as "down", not as "no such port" flapping).
  let syncing = Promise.resolve();
  const syncTcp = () => {
    if (!o.tcp || !ingress) return;
    const ing = ingress;
    const held = plan.instances.flatMap((i) => (i.tcp ?? []).map((m) => m.public));
    const own = held.filter((p) => o.tcp!.reservedPorts.has(p));
    const want = held.filter((p) => !o.tcp!.reservedPorts.has(p));
    syncing = syncing.then(async () => {
      const failed = await ing.syncTcp(want);
      const problems = [...own.map((port) => ({ port, error: 'one of this node’s own ports' })), ...failed];
      if (JSON.stringify(problems) !== JSON.stringify(tcpProblems) && problems.length > 0)
        o.logger.warn({ problems }, 'TCP mappings not served on this node');
      tcpProblems = problems;
    });
  };
  const rebuild = () => {
    try {
      plan = ingressPlan(o.store.views(), o.domain, Date.now());
      prober.set(plan.probes);
      rebuildTable();
      certs?.sync(plan.instances.filter((i) => i.ingressTls).map((i) => ({ id: i.id, hosts: i.hosts })));
      syncTcp();
    } catch (err) {
      o.logger.warn({ err }, 'ingress routes not rebuilt');
    }
  };
  rebuild();
  const stopFollowing = followState(o.store, rebuild, { everyMs: o.refreshMs ?? 2000 });
  try {
    ingress = await startIngress({
      listen: {
        ...(o.httpPort ? { http: { host: o.host, port: o.httpPort } } : {}),
        ...(o.tlsPort ? { tls: { host: o.host, port: o.tlsPort } } : {}),
      },
      routes: () => table,
      ...(o.tcp ? { tcp: { host: o.host, routes: () => tcpTable } } : {}),
      logger: o.logger,
      ...(dial ? { dial } : {}),
      ...(certs
        ? {
            terminate: {
              context: (h: string) => certs.context(h),
              challenge: (h: string, t: string) => certs.challenge(h, t),
              relay: (h: string, t: string) => relayChallenge(h, t),
            },
          }
        : {}),
    });
  } catch (err) {
    stopFollowing();
    prober.close();
    dialer?.close();
    certs?.close();
    throw err;
  }
  const started = ingress;
  syncTcp();
  const author = o.store.author?.bind(o.store);
  const granter =
    o.key && author
      ? startPortGranter({
          store: { views: () => o.store.views(), onAccepted: (f) => o.store.onAccepted(f), author },
          key: o.key,
          logger: o.logger,
        })
      : undefined;
  return {
    ingress: started,
    table: () => table,
    tcpTable: () => tcpTable,
    tcpProblems: () => tcpProblems,
    ...(certs ? { certificates: certs } : {}),
    async close() {
      certs?.close();
      stopFollowing();
      granter?.close();
      prober.close();
      await syncing;
      await started.close();
      dialer?.close();
    },
  };
}
