// Loaded by every command at start: keep it light. Keys (@noble curves) and the HTTP client load when used.
import type { KeyPair } from '@formation/identity';
import { DEFAULT_PORTS } from '@formation/interface';
import type { ApiClient } from '@formation/service/client';
import { parseNodeUrl, readKitConfig } from './cli-config.ts';

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
 */
export async function serviceUrl(service: ServiceName, nodeFlag?: string): Promise<string> {
  const direct = process.env[`FORM_${service.toUpperCase()}_URL`];
  if (direct) return parseNodeUrl(direct);
  const base = parseNodeUrl(nodeFlag ?? process.env.FORM_NODE ?? (await readKitConfig())?.node ?? 'http://127.0.0.1');
  const u = new URL(base);
  if (u.port) return base; // an explicit port names one service directly
  const offset = Number(process.env.FORM_PORT_OFFSET ?? 0) || 0;
  u.port = String(PORT[service] + offset);
  return u.toString().replace(/\/+$/, '');
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
