// Where another node's API is, seen from this CLI: used by every command that must reach the node
// running a particular replica (commit, attest, logs), not just the node it talks to.
import { DEFAULT_PORTS } from '@formation/interface';
import type { ServiceName } from './node-client.ts';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|::1|\[::1\])$/;

/**
 * A node's `service` API from its registered p2p endpoint (`host:port`; every port of a node is shifted
 * by the same offset), given the URL this CLI already uses for its own node:
 * - that URL is plain http on loopback: the nodes share this machine (a local devnet, `--port-offset`),
 *   so the other node is on the same loopback host at its own offset;
 * - otherwise the node's registered host over https (its TLS API, pinned to its key by the caller:
 *   pass the node's key as the ApiClient audience); plain http only if this CLI was pointed at plain http.
 * Null when the endpoint is not `host:port`, or names a host only that machine can reach (0.0.0.0 or
 * loopback) while this CLI is elsewhere.
 *
 * @example
 * replicaNodeUrl('198.51.100.12:3005', 'vmm', 'https://198.51.100.11:3002') // 'https://198.51.100.12:3002'
 * replicaNodeUrl('192.168.77.3:4015', 'vmm', 'http://127.0.0.1:4002') // 'http://127.0.0.1:4012'
 */
export function replicaNodeUrl(
  endpoint: string | undefined | null,
  service: ServiceName,
  localUrl: string,
): string | null {
  const m = /^(.*):(\d+)$/.exec(endpoint ?? '');
  if (!m) return null;
  const offset = Number(m[2]) - DEFAULT_PORTS.p2p;
  if (offset < 0) return null;
  const port = DEFAULT_PORTS[service] + offset;
  const local = new URL(localUrl);
  if (local.protocol === 'http:' && LOOPBACK.test(local.hostname)) return `http://${local.hostname}:${port}`;
  const host = (m[1] as string).replace(/^\[(.*)\]$/, '$1');
  if (host === '' || host === '0.0.0.0' || LOOPBACK.test(host)) return null;
  return `${local.protocol}//${host.includes(':') ? `[${host}]` : host}:${port}`;
}
