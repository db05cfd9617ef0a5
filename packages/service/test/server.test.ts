import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, signRequest } from '@formation/identity';
import { FormError } from '@formation/interface';
import { Type } from '@sinclair/typebox';
import { ApiClient, createApiServer, createLogger, loadConfig, requireSigner, setApiIdentity } from '../src/index.ts';

async function app(identity?: string) {
  const s = await createApiServer({ name: 'test', logger: createLogger('silent'), ...(identity ? { identity } : {}) });
  s.get('/boom', async () => {
    throw new FormError('VM_BAD_STATE', 'Cannot pause VM x: it is stopped');
  });
  s.post('/signed', { preHandler: requireSigner() }, async (req) => ({ signer: req.signer?.address }));
  await s.ready();
  return s;
}

test('FormError maps to its status and error body', async () => {
  const s = await app();
  const r = await s.inject({ method: 'GET', url: '/boom' });
  assert.equal(r.statusCode, 409);
  assert.deepEqual(r.json(), { error: { code: 'VM_BAD_STATE', message: 'Cannot pause VM x: it is stopped' } });
  const nf = await s.inject({ method: 'GET', url: '/nope' });
  assert.equal(nf.statusCode, 404);
  assert.equal(nf.json().error.code, 'NOT_FOUND');
});

test('openapi document is served', async () => {
  const s = await app();
  const r = await s.inject({ method: 'GET', url: '/openapi.json' });
  assert.equal(r.statusCode, 200);
  assert.equal(r.json().openapi, '3.0.3');
  assert.ok(r.json().paths['/signed']);
});

test('signed route accepts a good signature, refuses bad and replayed ones with 401', async () => {
  const s = await app();
  const k = generateKeyPair();
  const body = JSON.stringify({ x: 1 });
  const audience = (await s.inject({ method: 'GET', url: '/identity' })).json().identity;
  assert.match(audience, /^svc-[0-9a-f]{32}$/, 'a service without a node key has its own identity');
  const headers = {
    'content-type': 'application/json',
    ...signRequest(k, { method: 'POST', path: '/signed', body, audience }),
  };
  const ok = await s.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().signer, k.address);
  const replay = await s.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(replay.statusCode, 401);
  assert.equal(replay.json().error.code, 'AUTH_REPLAYED');
  const h2 = {
    'content-type': 'application/json',
    ...signRequest(k, { method: 'POST', path: '/signed', body, audience }),
  };
  const tampered = await s.inject({ method: 'POST', url: '/signed', payload: JSON.stringify({ x: 2 }), headers: h2 });
  assert.equal(tampered.statusCode, 401);
  assert.equal(tampered.json().error.code, 'AUTH_BAD_SIGNATURE');
  const unsigned = await s.inject({
    method: 'POST',
    url: '/signed',
    payload: body,
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(unsigned.json().error.code, 'AUTH_MISSING');
  const badJson = await s.inject({
    method: 'POST',
    url: '/signed',
    payload: '{',
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(badJson.statusCode, 400);
});

// Exploit (issue 16): the signed string named no node, so a request made for node A (a dashboard
// login, a signed DELETE) was accepted by node B within the skew window.
test('a request signed for node A is refused by node B with AUTH_WRONG_AUDIENCE (421)', async () => {
  const nodeA = generateKeyPair();
  const nodeB = generateKeyPair();
  const a = await app(nodeA.publicKey);
  const b = await app();
  setApiIdentity(b, nodeB.publicKey);
  assert.equal((await b.inject({ method: 'GET', url: '/identity' })).json().identity, nodeB.publicKey);
  const dev = generateKeyPair();
  const body = '{}';
  const headers = {
    'content-type': 'application/json',
    ...signRequest(dev, { method: 'POST', path: '/signed', body, audience: nodeA.publicKey }),
  };
  const atB = await b.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(atB.statusCode, 421);
  assert.equal(atB.json().error.code, 'AUTH_WRONG_AUDIENCE');
  assert.match(
    atB.json().error.message,
    new RegExp(
      `^Cannot accept this request: it was signed for node ${nodeA.publicKey.slice(0, 12)}…, this is node ${nodeB.publicKey.slice(0, 12)}…`,
    ),
  );
  assert.match(atB.json().error.hint, /Re-sign it for this node/);
  const atA = await a.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(atA.statusCode, 200);
});

test('ApiClient signs for the identity the server states, and re-learns it once when refused', async () => {
  const s = await app();
  await s.listen({ host: '127.0.0.1', port: 0 });
  try {
    const url = `http://127.0.0.1:${(s.server.address() as { port: number }).port}`;
    const k = generateKeyPair();
    const client = new ApiClient(url, k);
    assert.equal((await client.post<{ signer: string }>('/signed', { x: 1 })).signer, k.address);
    // The server's identity changes (a restart on the same port): the client asks again and re-signs.
    const node = generateKeyPair();
    setApiIdentity(s, node.publicKey);
    assert.equal((await new ApiClient(url, k).post<{ signer: string }>('/signed', { x: 2 })).signer, k.address);
    assert.equal(await new ApiClient(url, k).audience(), node.publicKey);
    // A client told whom to sign for does not re-learn: a request for another node stays refused.
    await assert.rejects(
      new ApiClient(url, k, 5000, generateKeyPair().publicKey).post('/signed', {}),
      (e: unknown) => e instanceof FormError && e.code === 'AUTH_WRONG_AUDIENCE',
    );
  } finally {
    await s.close();
  }
});

test('ApiClient says clearly when a server does not state its identity', async () => {
  const { createServer } = await import('node:http');
  const old = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'No route' } }));
  });
  await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(old.address() as { port: number }).port}`;
    await assert.rejects(
      new ApiClient(url, generateKeyPair()).post('/signed', {}),
      (e: unknown) =>
        e instanceof FormError && e.code === 'UNAVAILABLE' && /does not say which node it is/.test(e.message),
    );
  } finally {
    old.close();
  }
});

test('loadConfig merges defaults, env and flags and reports every bad value', () => {
  const schema = Type.Object({
    port: Type.Integer({ minimum: 1, maximum: 65535, default: 3002 }),
    dir: Type.String({ default: '/tmp/x' }),
    level: Type.Union([Type.Literal('info'), Type.Literal('debug')], { default: 'info' }),
  });
  assert.deepEqual(loadConfig(schema, {}), { port: 3002, dir: '/tmp/x', level: 'info' });
  assert.equal(loadConfig(schema, { env: { port: '4000' } }).port, 4000);
  assert.equal(loadConfig(schema, { env: { port: '4000' }, flags: { port: 5000 } }).port, 5000);
  assert.throws(
    () => loadConfig(schema, { env: { port: 'abc', level: 'loud' } }),
    (e: unknown) =>
      e instanceof FormError && e.code === 'CONFIG_INVALID' && /\/port/.test(e.message) && /\/level/.test(e.message),
  );
  assert.throws(() => loadConfig(schema, { file: '/nonexistent.json', fileRequired: true }), /does not exist/);
});
