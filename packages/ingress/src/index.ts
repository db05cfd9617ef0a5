/**
 * @formation/ingress: a node's public door. HTTP routed by Host and TLS routed by SNI (passed through,
 * never decrypted) to a healthy replica over formnet, plus the health model and the prober behind it.
 *
 * @example
 * const prober = createProber({ logger });
 * const ingress = await startIngress({
 *   listen: { http: { host: publicAddress, port: 80 }, tls: { host: publicAddress, port: 443 } },
 *   routes: () => buildRouteTable({ instances, health: (id) => prober.status(id) }),
 *   logger,
 * });
 */
export {
  type ClientHelloResult,
  hostProblem,
  MAX_CLIENT_HELLO_BYTES,
  MAX_HELLO_READ_BYTES,
  readClientHello,
} from './client-hello.ts';
export { type Dialer, type DialOptions, dialError, directDialer } from './dialer.ts';
export {
  type CheckResult,
  type HealthHistory,
  type HealthState,
  type HealthStatus,
  healthState,
  INITIAL_HEALTH,
  nextHealth,
} from './health.ts';
export { type HttpHeadResult, readHttpHead } from './http-head.ts';
export {
  ACME_RELAY_HEADER,
  DEFAULT_INGRESS_LIMITS,
  type Ingress,
  type IngressLimits,
  type IngressOptions,
  type IngressStats,
  type ListenAddress,
  type RefusalReason,
  startIngress,
} from './ingress.ts';
export {
  type Clock,
  type CommandRunner,
  createProber,
  type HealthReport,
  netTransport,
  type Prober,
  type ProberOptions,
  type ProbeTarget,
  type ProbeTransport,
  systemClock,
} from './prober.ts';
export {
  type Backend,
  buildRouteTable,
  buildTcpRouteTable,
  guestPorts,
  inFormnet,
  pickOrder,
  type Route,
  type RouteInput,
  type RouteTable,
  type TcpRouteTable,
} from './routes.ts';
