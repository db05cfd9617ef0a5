import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  createDelegation,
  DELEGATION_HEADER,
  delegatedKey,
  delegationProblem,
  generateKeyPair,
  MAX_DELEGATION_MS,
  NonceCache,
  signRequest,
  verifyRequest,
} from '../src/index.ts';

const req = { method: 'POST', path: '/formpacks/build', body: '{"x":1}', audience: 'node-under-test' };

test('a delegated request verifies as the owner only where delegation is allowed', () => {
  const dev = generateKeyPair();
  const session = generateKeyPair();
  const acting = delegatedKey(session, createDelegation(dev, session.publicKey, Date.now() + 60_000));
  const headers = signRequest(acting, req);
  assert.ok(headers[DELEGATION_HEADER], 'the delegation travels with the request');
  const signer = verifyRequest(headers, req, {
    audience: req.audience,
    nonces: new NonceCache({ since: 0 }),
    allowDelegation: true,
  });
  assert.equal(signer.address, dev.address);
  assert.equal(signer.publicKey, dev.publicKey);
  assert.equal(signer.delegate, session.publicKey);
  assert.throws(
    () => verifyRequest(signRequest(acting, req), req, { audience: req.audience }),
    (e: unknown) => e instanceof FormError && e.code === 'AUTH_FORBIDDEN' && /delegated key/.test(e.message),
  );
  // Without a delegation the same key is just itself.
  assert.equal(
    verifyRequest(signRequest(session, req), req, { audience: req.audience, allowDelegation: true }).address,
    session.address,
  );
});

test('expired, forged or mismatched delegations are refused with the reason', () => {
  const dev = generateKeyPair();
  const session = generateKeyPair();
  const now = Date.now();
  const expired = delegatedKey(session, createDelegation(dev, session.publicKey, now - 1));
  assert.throws(
    () => verifyRequest(signRequest(expired, req), req, { audience: req.audience, allowDelegation: true }),
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
    () => verifyRequest(headers, req, { audience: req.audience, allowDelegation: true }),
    (e: unknown) => e instanceof FormError && e.code === 'AUTH_FORBIDDEN',
  );
});

test('a delegation carries its issue time: lifetime bounded, not usable before issue, old shape refused', () => {
  const dev = generateKeyPair();
  const session = generateKeyPair();
  const now = Date.now();
  const week = createDelegation(dev, session.publicKey, now + MAX_DELEGATION_MS, now);
  assert.equal(delegationProblem(week, session.publicKey, now), null);
  const longer = createDelegation(dev, session.publicKey, now + MAX_DELEGATION_MS + 1, now);
  assert.match(String(delegationProblem(longer, session.publicKey, now)), /lasts longer than 7 days/);
  // Moving issuedAt forward to stretch the lifetime breaks the signature.
  assert.match(String(delegationProblem({ ...longer, issuedAt: now + 10 }, session.publicKey, now + 20)), /signature/);
  // Dated before issue (beyond a few minutes of clock skew): refused; within the skew: fine.
  assert.match(String(delegationProblem(week, session.publicKey, now - 3_600_000)), /before it was issued/);
  assert.equal(delegationProblem(week, session.publicKey, now - 60_000), null);
  const { issuedAt: _i, ...v1 } = week;
  assert.match(String(delegationProblem(v1, session.publicKey, now)), /no issuedAt/);
});
