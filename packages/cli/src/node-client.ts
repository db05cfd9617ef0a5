// Loaded by every command at start: keep it light. Keys (@noble curves) and the HTTP client load when used.
import type { KeyPair } from '@formation/identity';
import { DEFAULT_PORTS } from '@formation/interface';
import type { ApiClient } from '@formation/service/client';
import { type KitConfig, parseNodeKey, parseNodeUrl, readKitConfig } from './cli-config.ts';

export type ServiceName = 'formnet' | 'vmm' | 'pack' | 'state';

const PORT: Record<ServiceName, number> = {
  formnet: DEFAULT_PORTS.formnet,
  vmm: DEFAULT_PORTS.vmm,
  pack: DEFAULT_PORTS.pack,
  state: DEFAULT_PORTS.state,
};

/**
 * Where a node's service lives. Precedence: `FORM_<SERVICE>_URL` env (e.g. FORM_PACK_URL), then the
 * node base (`--node`, then `FORM_NODE`, then `form kit init`'s config, then http://127.0.0.1) with the
 * service's port (seed ports: formnet 3001, vmm 3002, pack 3003, state 3004; FORM_PORT_OFFSET shifts them,
 * which is how several nodes share one host's loopback).
 *
 * An https:// URL is pinned (see `pinServiceUrl`) before it is returned, so every client the command
 * makes for it reaches only that node.
 */
export async function serviceUrl(service: ServiceName, nodeFlag?: string): Promise<string> {
  const direct = process.env[`FORM_${service.toUpperCase()}_URL`];
  const given = direct ?? nodeFlag ?? process.env.FORM_NODE;
  // The kit config only when it gives the node, or holds the key to pin an https URL.
  let cfg = given === undefined ? await readKitConfig() : undefined;
  const url = direct
    ? parseNodeUrl(direct)
    : serviceUrlOf(parseNodeUrl(nodeFlag ?? process.env.FORM_NODE ?? cfg?.node ?? 'http://127.0.0.1'), service);
  if (url.startsWith('https:')) {
    cfg ??= await readKitConfig();
    await pinServiceUrl(url, cfg);
  }
  return url;
}

/** A service's URL at a node base: the base itself when it names a port, else the service's seed port + FORM_PORT_OFFSET. */
export function serviceUrlOf(base: string, service: ServiceName): string {
  const u = new URL(base);
  if (u.port) return base.replace(/\/+$/, ''); // an explicit port names one service directly
  const offset = Number(process.env.FORM_PORT_OFFSET ?? 0) || 0;
  u.port = String(PORT[service] + offset);
  return u.toString().replace(/\/+$/, '');
}

/** Node keys learned on first use in this process, per host: every service of one node must present the same key. */
const firstUse = new Map<string, string>();

/**
 * Pin the node key an https:// service URL must present: FORM_NODE_KEY when set; else the kit
 * config's `nodeKey` when the URL is on the configured node's host; else (a `--node https://…` to
 * another host) the key the node's certificate is bound to, checked once per host and kept for this
 * command (trust on first use). A node presenting another key is then refused by the transport with
 * NET_BAD_PEER naming both keys. Plain http:// URLs are not pinned (loopback only).
 */
export async function pinServiceUrl(url: string, cfg?: KitConfig): Promise<void> {
  const u = new URL(url);
  if (u.protocol !== 'https:') return;
  const { pinNodeKey, pinnedNodeKey, probeNodeKey } = await import('@formation/service/transport');
  if (pinnedNodeKey(url)) return;
  const sameHost = cfg?.nodeKey && cfg.node && new URL(cfg.node).hostname === u.hostname;
  let key = process.env.FORM_NODE_KEY
    ? parseNodeKey(process.env.FORM_NODE_KEY)
    : sameHost
      ? cfg.nodeKey
      : firstUse.get(u.hostname);
  if (!key) {
    try {
      key = (await probeNodeKey(url, { timeoutMs: 10_000 })).nodeKey;
    } catch (err) {
      if ((err as { code?: string }).code) throw err; // a refused certificate
      return; // unreachable: the call itself says so (CLI_NO_NODE)
    }
    firstUse.set(u.hostname, key);
    process.stderr.write(
      `form: ${u.hostname} is node ${key} (trusted for this command only; pin it with \`form kit init --node ${u.protocol}//${u.host} --node-key ${key}\`)\n`,
    );
  }
  pinNodeKey(url, key);
}

/** The developer key from `form kit init` (KEY_NOT_FOUND with the fix when missing). */
export async function developerKey(): Promise<KeyPair> {
  const cfg = await readKitConfig();
  const { developerKeyPath, loadKey } = await import('@formation/identity');
  return loadKey(cfg?.keyPath ?? developerKeyPath());
}

/** A signed client for one service of the node. */
export async function serviceClient(
  service: ServiceName,
  opts: { node?: string; sign?: boolean } = {},
): Promise<ApiClient> {
  const url = await serviceUrl(service, opts.node);
  const key = opts.sign === false ? undefined : await developerKey();
  const { ApiClient } = await import('@formation/service/client');
  return new ApiClient(url, key);
}
