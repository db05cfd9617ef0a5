// The web tests' shared set-up: a dashboard over a real state service (in memory) and the other node
// APIs as the test gives them, and signing in to it as `form web login` does.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { type KeyPair, signRequest } from '@formation/identity';
import { type ApiServer, apiIdentity, createApiServer, createLogger } from '@formation/service';
import { createStateService, openStateStore, type StateStore } from '@formation/state';
import { createWebService, type WebService, type WebServiceOptions } from '../src/index.ts';

export const logger = createLogger('silent');

/** Listen on a free loopback port; the base URL. */
export async function listen(app: ApiServer): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/** A `node.register` body for the one node the BFF tests' state knows. */
export const TEST_NODE = {
  name: 'node-test',
  capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
  endpoint: '127.0.0.1:3005',
  p2pPeerId: 'x',
  wgPublicKey: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  formnetRange: '10.129.0.0/24',
};

/** A state store in memory that knows one node, `node` (registered as TEST_NODE). */
export function nodeStore(node: KeyPair): StateStore {
  const store = openStateStore({ path: ':memory:' });
  store.author(node, 'node.register', TEST_NODE);
  return store;
}

/** A formnet API stand-in whose `GET /node` names `node` as this node (so its replicas are "local"). */
export async function formnetOf(node: KeyPair): Promise<ApiServer> {
  const formnet = await createApiServer({ name: 'formnet', logger });
  formnet.get('/node', async () => ({
    node: node.address,
    formnetAddress: '10.128.0.1',
    domain: 'dev.formation.local',
    instanceCidr: '10.129.0.0/24',
  }));
  return formnet;
}

/** Options of the dashboard besides its node APIs and logger. */
type WebExtras = Omit<Partial<WebServiceOptions>, 'urls' | 'logger'>;

/** A node API: a server the fixture listens on and closes, or the URL of one the test runs itself. */
export type Upstream = ApiServer | string;

export interface Dashboard {
  web: WebService;
  /** Closes the dashboard, the state service and every upstream server the fixture listens on. */
  close(): Promise<void>;
}

/**
 * The dashboard over a real state service on `store`; pack, vmm and formnet as given (an empty API
 * stand-in when not). `web` adds to the service options (sampling is off unless it says otherwise).
 */
export async function startDashboard(opts: {
  store: StateStore;
  pack?: Upstream;
  vmm?: Upstream;
  formnet?: Upstream;
  web?: WebExtras;
}): Promise<Dashboard> {
  const state = await createStateService({ store: opts.store, logger });
  const owned: ApiServer[] = [state];
  const urlOf = async (name: string, u: Upstream | undefined): Promise<string> => {
    const server = u ?? (await createApiServer({ name, logger }));
    if (typeof server === 'string') return server;
    owned.push(server);
    return listen(server);
  };
  const urls = {
    state: await listen(state),
    pack: await urlOf('pack', opts.pack),
    vmm: await urlOf('vmm', opts.vmm),
    formnet: await urlOf('formnet', opts.formnet),
  };
  const web = await createWebService({ urls, logger, sampleIntervalMs: 0, ...opts.web });
  return {
    web,
    async close() {
      await web.close();
      for (const s of owned) await s.close();
    },
  };
}

/** Where nothing listens (the discard port): every node API call fails at once. */
const NOWHERE = 'http://127.0.0.1:9';

/** A dashboard whose node APIs are all unreachable (sign-in works: it is the dashboard's own). */
export function offlineDashboard(extra: WebExtras = {}): Promise<WebService> {
  return createWebService({
    urls: { state: NOWHERE, pack: NOWHERE, vmm: NOWHERE, formnet: NOWHERE },
    logger,
    sampleIntervalMs: 0,
    ...extra,
  });
}

/** The headers of a JSON POST of `payload` to `url`, signed by `key` for this dashboard (its audience). */
export function signedHeaders(web: WebService, key: KeyPair, url: string, payload: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    ...signRequest(key, { method: 'POST', path: url, body: payload, audience: apiIdentity(web.app) }),
  };
}

/** POST `body` as JSON to `url`, signed by `key` (what the CLI sends to `/api/login/…`). */
export function signedPost(web: WebService, key: KeyPair, url: string, body: unknown = {}) {
  const payload = JSON.stringify(body);
  return web.app.inject({ method: 'POST', url, headers: signedHeaders(web, key, url, payload), payload });
}

/** A read-only sign-in: a login token signed by `key`, traded for a session; its cookie (`name=value`). */
export async function signIn(web: WebService, key: KeyPair): Promise<string> {
  const t = await signedPost(web, key, '/api/login/token');
  assert.equal(t.statusCode, 200, t.body);
  const res = await web.app.inject({ method: 'POST', url: '/api/session', payload: { token: t.json().token } });
  assert.equal(res.statusCode, 200, res.body);
  return String(res.headers['set-cookie']).split(';')[0] as string;
}
