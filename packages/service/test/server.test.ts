import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair, signRequest } from '@formation/identity';
import { FormError } from '@formation/interface';
import { Type } from '@sinclair/typebox';
import { createApiServer, createLogger, loadConfig, requireSigner } from '../src/index.ts';

async function app() {
  const s = await createApiServer({ name: 'test', logger: createLogger('silent') });
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
  const headers = { 'content-type': 'application/json', ...signRequest(k, { method: 'POST', path: '/signed', body }) };
  const ok = await s.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().signer, k.address);
  const replay = await s.inject({ method: 'POST', url: '/signed', payload: body, headers });
  assert.equal(replay.statusCode, 401);
  assert.equal(replay.json().error.code, 'AUTH_REPLAYED');
  const h2 = { 'content-type': 'application/json', ...signRequest(k, { method: 'POST', path: '/signed', body }) };
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
