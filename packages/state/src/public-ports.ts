// Plain TCP port mappings on the nodes' public addresses (issue 19): which public ports an owner may
// claim at all. The node's own services are never on offer, whatever an op says; a node also skips any
// port it listens on itself under another configuration (packages/node/src/ingress.ts).
import { FormError } from '@formation/interface';
import type { Views } from './views.ts';

/** Lowest public port an owner may claim: below it live the host's own services (22, 25, 53, 80, 443...). */
export const MIN_PUBLIC_TCP_PORT = 1024;

/**
 * Ports the network's nodes use by default (formnet 3001, VMM 3002, pack 3003, state 3004, libp2p 3005,
 * runtime 3006, dashboard 3010, DNS 5353, Redis 6379, WireGuard 51820): never claimable.
 */
export const RESERVED_PUBLIC_PORTS: ReadonlySet<number> = new Set([
  3001, 3002, 3003, 3004, 3005, 3006, 3010, 5353, 6379, 51820,
]);

/** Live port claims that count per account (the first by (ts, hash)): public ports are a shared, finite resource. */
export const PORT_CLAIMS_PER_ACCOUNT = 4;

/** Distinct admitted nodes that must grant a port claim: 2, or 1 in a one-node network (as for domains). */
export const PORT_QUORUM = 2;

/**
 * Why `port` cannot be claimed as a public TCP port, or null.
 *
 * @example publicPortProblem(5432) // null; publicPortProblem(443) // 'port 443 is below 1024 ...'
 */
export function publicPortProblem(port: number): string | null {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${port} is not a TCP port (1-65535)`;
  if (port < MIN_PUBLIC_TCP_PORT) {
    return `port ${port} is below ${MIN_PUBLIC_TCP_PORT}: the nodes' own services (DNS 53, HTTP 80, HTTPS 443, ssh 22) live there`;
  }
  if (RESERVED_PUBLIC_PORTS.has(port)) return `port ${port} is one of the nodes' own service ports`;
  return null;
}

/**
 * Why the API refuses `actor`'s new claim on `port` (CONFLICT), or null: the port is held by another
 * owner's instance, or the account is at its claim quota. (Views enforce the same without the API.)
 */
export function portClaimProblem(v: Pick<Views, 'ports'>, port: number, actor: string): FormError | null {
  const held = v.ports.find((p) => p.port === port && p.state === 'active');
  if (held && held.owner !== actor) {
    return new FormError('CONFLICT', `Cannot claim TCP port ${port}: another owner's instance holds it`, {
      hint: 'Pick another public port (1024-65535, not a node service port); `form port list` shows yours.',
    });
  }
  const mine = v.ports.filter((p) => p.owner === actor && p.port !== port).length;
  if (mine >= PORT_CLAIMS_PER_ACCOUNT) {
    return new FormError(
      'CONFLICT',
      `Cannot claim TCP port ${port}: the account already has ${mine} port claims, the limit`,
      {
        hint: 'Release one first (`form port rm <port>`).',
      },
    );
  }
  return null;
}
