import type { HealthStatus } from './health.ts';

/** Where the ingress can send a visitor: one replica's formnet address and its guest ports. */
export interface Backend {
  /** The replica (stable across route table rebuilds: connection counts and failures follow it). */
  id: string;
  /** Formnet address (10.128.0.0/9), or any address in tests. */
  address: string;
  /** Guest port for plain HTTP from :80, or null when the instance serves none. */
  httpPort: number | null;
  /** Guest port for TLS passthrough from :443, or null when the instance serves none. */
  tlsPort: number | null;
  /** Guest port for a plain TCP mapping (in a `TcpRouteTable` only). */
  tcpPort?: number;
}

export interface Route {
  instance: string;
  /** Only replicas that may receive traffic (running and, with a health check, healthy). */
  backends: readonly Backend[];
  /**
   * TLS on :443 ends at this ingress (`HTTPS <port> TERMINATE=ingress`): the visitor's TLS is decrypted
   * here with the ingress's own certificate and the plain HTTP goes to each backend's `httpPort`.
   */
  terminate?: true;
}

/** Host name (lower case, no port, no trailing dot) → route. */
export type RouteTable = ReadonlyMap<string, Route>;
/** Public TCP port → route (its backends carry `tcpPort`). */
export type TcpRouteTable = ReadonlyMap<number, Route>;

/** What the route table is built from: the state's instances and replicas, and the prober's health. */
export interface RouteInput {
  instances: ReadonlyArray<{
    id: string;
    /** Every host name that reaches the instance (`<name>.<domain>`, `<name>.<owner>.<domain>`, verified domains). */
    hosts: readonly string[];
    /** The instance's EXPOSE ports: they decide the guest ports (`guestPorts`). */
    expose: readonly number[];
    /** Whether the Formfile has a HEALTHCHECK (then only replicas the prober calls healthy are routed). */
    healthchecked: boolean;
    replicas: ReadonlyArray<{ id: string; address: string | null; running: boolean }>;
    /** Plain TCP mappings this instance holds (public port → guest port), for `buildTcpRouteTable`. */
    tcp?: ReadonlyArray<{ public: number; target: number }>;
    /** `HTTPS <port> TERMINATE=ingress`: TLS ends at the ingress, plain HTTP goes to this guest port. */
    ingressTls?: { port: number };
  }>;
  /** The prober's status of a replica, or undefined when it does not check it (e.g. a CMD check it cannot run). */
  health(replicaId: string): HealthStatus | undefined;
  /**
   * Addresses the ingress may connect to; default `inFormnet` (10.128.0.0/9). A replica's address is
   * reported by the node that runs it: without this, a lying node could point every ingress at
   * 127.0.0.1 (its own APIs, Redis) or the node's LAN.
   */
  addressAllowed?: (address: string) => boolean;
}

/**
 * Whether an IPv4 address is in formnet, 10.128.0.0/9 (what replicas get).
 *
 * @example
 * inFormnet('10.129.1.2') // true; inFormnet('127.0.0.1') // false
 */
export function inFormnet(address: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (!m || m.slice(1).some((o) => Number(o) > 255 || (o.length > 1 && o.startsWith('0')))) return false;
  return Number(m[1]) === 10 && Number(m[2]) >= 128;
}

/**
 * The guest ports the ingress uses for an instance, from its EXPOSE list: HTTP (:80) goes to 80 when
 * exposed, else to the lowest exposed port other than 443; TLS (:443) goes to 443 when exposed, else
 * nowhere (the ingress never terminates TLS, so only a guest that serves TLS on 443 gets HTTPS).
 *
 * @example
 * guestPorts([8080]) // { http: 8080, tls: null }
 */
export function guestPorts(expose: readonly number[]): { http: number | null; tls: number | null } {
  const sorted = [...expose].sort((a, b) => a - b);
  return {
    http: sorted.includes(80) ? 80 : (sorted.find((p) => p !== 443) ?? null),
    tls: sorted.includes(443) ? 443 : null,
  };
}

/**
 * The route table: host → the replicas that may take traffic. A replica is routed when it is running,
 * has an address the ingress may connect to (`addressAllowed`, formnet by default), and — when its instance has a health check the prober runs — is healthy (a starting
 * or unhealthy one is out). A host claimed by two instances is left out (never send a visitor to the
 * wrong owner; the state's naming rules decide who holds a name, not the ingress). Pure.
 */
export function buildRouteTable(input: RouteInput): RouteTable {
  const table = new Map<string, Route>();
  const conflicted = new Set<string>();
  const allowed = input.addressAllowed ?? inFormnet;
  for (const inst of input.instances) {
    const ports = inst.ingressTls ? { http: inst.ingressTls.port, tls: null } : guestPorts(inst.expose);
    const backends: Backend[] = [];
    for (const r of inst.replicas) {
      if (!r.running || !r.address || !allowed(r.address)) continue;
      const h = input.health(r.id);
      if (inst.healthchecked && h !== undefined && h !== 'healthy') continue;
      backends.push({ id: r.id, address: r.address, httpPort: ports.http, tlsPort: ports.tls });
    }
    for (const raw of new Set(inst.hosts.map((h) => h.toLowerCase().replace(/\.$/, '')))) {
      const other = table.get(raw);
      if (other && other.instance !== inst.id) {
        conflicted.add(raw);
        continue;
      }
      table.set(raw, { instance: inst.id, backends, ...(inst.ingressTls ? { terminate: true as const } : {}) });
    }
  }
  for (const h of conflicted) table.delete(h);
  return table;
}

/**
 * The TCP table: public port → the instance's routable replicas (the same rule as `buildRouteTable`)
 * at the mapping's guest port. A port two instances list is left out (the state decides who holds a
 * port; this is the ingress not trusting that blindly). Pure.
 *
 * @example buildTcpRouteTable({ instances: [{ ..., tcp: [{ public: 5432, target: 5432 }] }], health }).get(5432)
 */
export function buildTcpRouteTable(input: RouteInput): TcpRouteTable {
  const table = new Map<number, Route>();
  const conflicted = new Set<number>();
  const http = buildRouteTable({ ...input, instances: input.instances.map((i) => ({ ...i, hosts: [i.id] })) });
  for (const inst of input.instances) {
    const routable = http.get(inst.id)?.backends ?? [];
    for (const m of inst.tcp ?? []) {
      const other = table.get(m.public);
      if (other && other.instance !== inst.id) {
        conflicted.add(m.public);
        continue;
      }
      table.set(m.public, {
        instance: inst.id,
        backends: routable.map((b) => ({
          id: b.id,
          address: b.address,
          httpPort: null,
          tlsPort: null,
          tcpPort: m.target,
        })),
      });
    }
  }
  for (const p of conflicted) table.delete(p);
  return table;
}

/**
 * The order in which to try a route's backends for one connection: fewest active connections first,
 * ties broken round robin from `turn`; backends that failed to connect recently (`down`) go last, so
 * they are still tried when nothing else is left. Pure.
 */
export function pickOrder(
  backends: readonly Backend[],
  active: ReadonlyMap<string, number>,
  turn: number,
  down: ReadonlySet<string> = new Set(),
): Backend[] {
  const n = backends.length;
  if (n === 0) return [];
  const start = ((turn % n) + n) % n;
  const rotated = backends.map((_, i) => backends[(start + i) % n]!);
  return rotated
    .map((b, i) => ({ b, i, down: down.has(b.id) ? 1 : 0, load: active.get(b.id) ?? 0 }))
    .sort((x, y) => x.down - y.down || x.load - y.load || x.i - y.i)
    .map((x) => x.b);
}
