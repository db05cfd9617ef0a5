import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  createDelegation,
  DELEGATION_HEADER,
  delegatedKey,
  delegationProblem,
  generateKeyPair,
  NonceCache,
  signRequest,
  verifyRequest,
} from '../src/index.ts';

const req = { method: 'POST', path: '/formpacks/build', body: '{"x":1}' };

test('a delegated request verifies as the owner only where delegation is allowed', () => {
  const dev = generateKeyPair();
  const session = generateKeyPair();
  const acting = delegatedKey(session, createDelegation(dev, session.publicKey, Date.now() + 60_000));
  const headers = signRequest(acting, req);
  assert.ok(headers[DELEGATION_HEADER], 'the delegation travels with the request');
  const signer = verifyRequest(headers, req, { nonces: new NonceCache(), allowDelegation: true });
  assert.equal(signer.address, dev.address);
  assert.equal(signer.publicKey, dev.publicKey);
  assert.equal(signer.delegate, session.publicKey);
  assert.throws(
    () => verifyRequest(signRequest(acting, req), req, {}),
    (e: unknown) => e instanceof FormError && e.code === 'AUTH_FORBIDDEN' && /delegated key/.test(e.message),
  );
  // Without a delegation the same key is just itself.
  assert.equal(verifyRequest(signRequest(session, req), req, { allowDelegation: true }).address, session.address);
});

test('expired, forged or mismatched delegations are refused with the reason', () => {
  const dev = generateKeyPair();
  const session = generateKeyPair();
  const now = Date.now();
  const expired = delegatedKey(session, createDelegation(dev, session.publicKey, now - 1));
  assert.throws(
    () => verifyRequest(signRequest(expired, req), req, { allowDelegation: true }),
    (e: unknown) => e instanceof FormError && e.code === 'AUTH_FORBIDDEN' && /expired/.test(e.message),
  );
  const d = createDelegation(dev, session.publicKey, now + 60_000);
  assert.equal(delegationProblem(d, session.publicKey, now), null);
  assert.match(String(delegationProblem(d, dev.publicKey, now)), /not the signer/);
  assert.match(String(delegationProblem({ ...d, scope: 'all' }, session.publicKey, now)), /scope/);
  assert.match(
    String(delegationProblem({ ...d, owner: generateKeyPair().publicKey }, session.publicKey, now)),
    /signature/,
  );
  assert.match(String(delegationProblem({ ...d, extra: 1 }, session.publicKey, now)), /exactly/);
  assert.match(String(delegationProblem(null, session.publicKey, now)), /not an object/);
  assert.match(String(delegationProblem(createDelegation(dev, dev.publicKey, now + 1), dev.publicKey, now)), /itself/);
  assert.throws(
    () => delegatedKey(generateKeyPair(), d),
    (e: unknown) => e instanceof FormError,
  );
  // A garbled header is refused, not crashed on.
  const headers = { ...signRequest(session, req), [DELEGATION_HEADER]: '%%%not-base64-json' };
  assert.throws(
    () => verifyRequest(headers, req, { allowDelegation: true }),
    (e: unknown) => e instanceof FormError && e.code === 'AUTH_FORBIDDEN',
  );
});
