import { DEFAULT_PORTS } from '@formation/interface';
import pc from 'picocolors';
import { parseNodeUrl, readKitConfig } from '../cli-config.ts';
import { developerKey } from '../node-client.ts';
import { printJson } from '../output.ts';

interface LoginOptions {
  web?: string;
  node?: string;
  json?: boolean;
  readOnly?: boolean;
}

/**
 * Where the dashboard is: --web, FORM_WEB_URL, else the node's host (--node, FORM_NODE, kit config,
 * 127.0.0.1) on the web port (3010 + FORM_PORT_OFFSET).
 */
export async function webUrl(opts: LoginOptions): Promise<string> {
  const direct = opts.web ?? process.env.FORM_WEB_URL;
  if (direct) return parseNodeUrl(direct);
  const base = parseNodeUrl(opts.node ?? process.env.FORM_NODE ?? (await readKitConfig())?.node ?? 'http://127.0.0.1');
  const u = new URL(base);
  u.port = String(DEFAULT_PORTS.web + (Number(process.env.FORM_PORT_OFFSET ?? 0) || 0));
  return u.toString().replace(/\/+$/, '');
}

export async function login(opts: LoginOptions): Promise<number> {
  const key = await developerKey();
  const base = await webUrl(opts);
  const { ApiClient } = await import('@formation/service/client');
  const api = new ApiClient(base, key);
  const res = await api.request<{
    token: string;
    expiresAt: number;
    path: string;
    delegate: string;
    sessionExpiresAt: number;
  }>('POST', '/api/login/token', {});
  let canManage = false;
  if (!opts.readOnly) {
    // The dashboard made a key for this sign-in; we sign that it may act for us until the session ends.
    const { createDelegation } = await import('@formation/identity');
    const delegation = createDelegation(key, res.delegate, res.sessionExpiresAt);
    await api.request('POST', '/api/login/delegation', { token: res.token, delegation });
    canManage = true;
  }
  const url = `${base}${res.path}`;
  if (opts.json) {
    printJson({
      url,
      address: key.address,
      expiresAt: new Date(res.expiresAt).toISOString(),
      canManage,
      sessionExpiresAt: new Date(res.sessionExpiresAt).toISOString(),
    });
  } else {
    process.stdout.write(`Open this link to sign in to the dashboard as ${pc.bold(key.address)}:\n\n  ${url}\n\n`);
    process.stdout.write(pc.dim('It works once and expires in 5 minutes. Do not share it.\n'));
    process.stdout.write(
      pc.dim(
        canManage
          ? `The session may build, ship, start, stop, delete and commit for you until ${new Date(res.sessionExpiresAt).toLocaleString()}.\n`
          : 'The session is read-only.\n',
      ),
    );
  }
  return 0;
}
