import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { registerAttestRoutes } from '@formation/attest';
import { generateKeyPair, NonceCache, signRequest } from '@formation/identity';
import { createFormnetService, MemoryFormnetState } from '@formation/net';
import { createPackService } from '@formation/pack';
import { type ImageStore, type ProcessManager, registerAoRoutes, registerRuntimeRoutes } from '@formation/runtime';
import { type ApiServer, createApiServer, createLogger, setApiIdentity } from '@formation/service';
import { createStateService, openStateStore } from '@formation/state';
import { registerVmmRoutes, type VmManager } from '@formation/vmm';
import { createWebService } from '@formation/web';
import { Type } from '@sinclair/typebox';
import { registerNodeRoutes } from '../src/node-routes.ts';

const logger = createLogger('silent');

type Operation = { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> };

/**
 * "METHOD /path" of every operation in an OpenAPI 3 document whose success answer (a 2xx status) has no
 * schema: a route without a response schema serializes whatever its handler returns (and documents nothing).
 * A 204 needs none.
 */
export function operationsWithoutResponseSchema(doc: unknown): string[] {
  const paths = (doc as { paths?: Record<string, Record<string, Operation>> }).paths ?? {};
  const missing: string[] = [];
  for (const [path, ops] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const ok = Object.entries(op.responses ?? {}).filter(([status]) => /^2\d\d$/.test(status));
      const declared = ok.some(
        ([status, r]) => status === '204' || Object.values(r.content ?? {}).some((c) => c.schema !== undefined),
      );
      if (!declared) missing.push(`${method.toUpperCase()} ${path}`);
    }
  }
  return missing;
}

/**
 * Every Formation API as formationd mounts it, built without root: routes only where a handler would
 * need a VM manager, runc or Redis (no handler runs here; the documents are what is checked).
 */
async function allServices(tmp: string) {
  const store = openStateStore({ path: ':memory:' });
  const state = await createStateService({ store, logger });
  const pack = await createPackService({ dataDir: tmp, cacheDir: join(tmp, 'cache'), logger });
  const vmm = await createApiServer({ name: 'vmm', logger });
  registerVmmRoutes(vmm, {} as VmManager, undefined, {}, {} as Parameters<typeof registerVmmRoutes>[4]);
  // formationd mounts the attestation routes on the VMM API
  registerAttestRoutes(vmm, { nodeKey: generateKeyPair(), vmm: {} as VmManager, logger });
  const runtime = await createApiServer({ name: 'runtime', logger });
  const node = { id: '0x0', name: 'test', desc: '', url: 'http://127.0.0.1:9' };
  const nonces = new NonceCache();
  const manager = {} as ProcessManager;
  registerRuntimeRoutes(runtime, { manager, images: {} as ImageStore, cacheDir: tmp, nonces, node });
  registerAoRoutes(runtime, { manager, nonces, node });
  const formnet = await createFormnetService({ state: new MemoryFormnetState(), logger });
  // and its own routes on the formnet API
  registerNodeRoutes(formnet, { info: () => NODE_INFO, isNode: () => false, revisionFile: () => undefined });
  const u = 'http://127.0.0.1:9';
  const web = await createWebService({
    urls: { state: u, pack: u, vmm: u, formnet: u },
    logger,
    sampleIntervalMs: 0,
  });
  const apps: Record<string, ApiServer> = { state, pack: pack.app, vmm, runtime, formnet, web: web.app };
  return {
    apps,
    async close() {
      await Promise.all([state.close(), pack.close(), vmm.close(), runtime.close(), formnet.close(), web.close()]);
      store.close();
    },
  };
}

const NODE_INFO = {
  node: '0x1',
  netns: null,
  wireguardPort: 51820,
  formnetAddress: '10.128.0.1',
  instanceCidr: '10.129.0.0/24',
  domain: 'test.local',
  dns: { host: '127.0.0.1', port: 5353 },
  nodeKey: '02ab',
  publicAddress: null,
};

test('every route of every service has a response schema for its success status (OpenAPI documents)', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'formation-openapi-responses-'));
  const services = await allServices(tmp);
  try {
    const problems: string[] = [];
    let operations = 0;
    for (const [name, app] of Object.entries(services.apps)) {
      const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
      for (const ops of Object.values(doc.paths as Record<string, object>)) operations += Object.keys(ops).length;
      for (const op of operationsWithoutResponseSchema(doc)) problems.push(`${name}: ${op}`);
    }
    assert.deepEqual(problems, [], `routes without a response schema:\n${problems.join('\n')}`);
    assert.ok(operations >= 100, `checked ${operations} operations`);
  } finally {
    await services.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the check itself fails on a route without a response schema, and passes a 204 or a media type', async () => {
  const app = await createApiServer({ name: 'check', logger });
  app.get('/bare', async () => ({ a: 1 }));
  app.get('/typed', { schema: { response: { 200: Type.Object({ a: Type.Integer() }) } } }, async () => ({ a: 1 }));
  app.delete('/gone', { schema: { response: { 204: Type.Null() } } }, async (_req, reply) =>
    reply.status(204).send(null),
  );
  app.get(
    '/text',
    { schema: { response: { 200: { content: { 'text/plain': { schema: Type.String() } } } } } },
    async () => 'x',
  );
  try {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.deepEqual(operationsWithoutResponseSchema(doc), ['GET /bare']);
  } finally {
    await app.close();
  }
});

test("the node's routes: GET /node answers through its schema, GET /revisions/:sha256 for registered nodes only", async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'formation-node-routes-'));
  const member = generateKeyPair();
  const sha = 'ab'.repeat(32);
  const file = join(tmp, 'rev.qcow2');
  writeFileSync(file, 'revision bytes');
  const app = await createApiServer({ name: 'formnet', logger });
  setApiIdentity(app, 'test-node');
  registerNodeRoutes(app, {
    info: () => NODE_INFO,
    isNode: (k) => k === member.publicKey,
    revisionFile: (s) => (s === sha ? file : undefined),
  });
  const get = (key: typeof member, url: string) =>
    app.inject({
      method: 'GET',
      url,
      headers: signRequest(key, { method: 'GET', path: url, body: '', audience: 'test-node' }) as Record<
        string,
        string
      >,
    });
  try {
    assert.deepEqual((await app.inject({ method: 'GET', url: '/node' })).json(), NODE_INFO);
    const ok = await get(member, `/revisions/${sha}`);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.body, 'revision bytes');
    assert.equal(ok.headers['x-form-sha256'], sha);
    assert.equal((await get(member, `/revisions/${'cd'.repeat(32)}`)).json().error.code, 'NOT_FOUND');
    const stranger = await get(generateKeyPair(), `/revisions/${sha}`);
    assert.equal(stranger.statusCode, 403);
    assert.equal(stranger.json().error.code, 'AUTH_FORBIDDEN');
    assert.equal((await app.inject({ method: 'GET', url: `/revisions/${sha}` })).statusCode, 401);
  } finally {
    await app.close();
    rmSync(tmp, { recursive: true, force: true });
  }
});
