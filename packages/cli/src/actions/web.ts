import { DEFAULT_PORTS, FormError } from '@formation/interface';
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
    const { createDelegation, MAX_DELEGATION_MS } = await import('@formation/identity');
    // The dashboard proposes the session's end; we sign nothing longer than the rule allows (and
    // nothing already over): a dashboard that asks for more is refused, not obeyed.
    const now = Date.now();
    if (
      !Number.isSafeInteger(res.sessionExpiresAt) ||
      res.sessionExpiresAt <= now ||
      res.sessionExpiresAt - now > MAX_DELEGATION_MS
    ) {
      throw new FormError(
        'AUTH_FORBIDDEN',
        `Cannot sign in: the dashboard asked for a delegation until ${String(res.sessionExpiresAt)}, more than the ${MAX_DELEGATION_MS / 3_600_000} h a delegation may last`,
        { hint: 'This dashboard is misconfigured or not trustworthy; sign in with --read-only, or use another node.' },
      );
    }
    const delegation = createDelegation(key, res.delegate, res.sessionExpiresAt, now);
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
