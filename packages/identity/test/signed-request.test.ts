import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { generateKeyPair, NonceCache, signRequest, verifyRequest } from '../src/index.ts';

const code = (c: string, re?: RegExp) => (e: unknown) =>
  e instanceof FormError && e.code === c && (re === undefined || re.test(e.message));

// Exploit (issue 16): a request signed for node A was accepted by node B inside the skew window.
test('a request signed for one node is refused by another (audience), with a clear error', () => {
  const dev = generateKeyPair();
  const nodeA = generateKeyPair();
  const nodeB = generateKeyPair();
  const req = { method: 'DELETE', path: '/vms/abc', body: '' };
  const headers = signRequest(dev, { ...req, audience: nodeA.publicKey });
  assert.throws(
    () => verifyRequest(headers, req, { audience: nodeB.publicKey, nonces: new NonceCache() }),
    code(
      'AUTH_WRONG_AUDIENCE',
      new RegExp(`signed for node ${nodeA.publicKey.slice(0, 10)}.*this is node ${nodeB.publicKey.slice(0, 10)}`),
    ),
  );
  // Rewriting the audience header to B's breaks the signature: the audience is in the signed string.
  assert.throws(
    () => verifyRequest({ ...headers, 'x-form-audience': nodeB.publicKey }, req, { audience: nodeB.publicKey }),
    code('AUTH_BAD_SIGNATURE'),
  );
  assert.equal(verifyRequest(headers, req, { audience: nodeA.publicKey }).address, dev.address);
});

test('a request that names no audience is refused', () => {
  const dev = generateKeyPair();
  const node = generateKeyPair();
  const req = { method: 'POST', path: '/vms', body: '{}' };
  const headers: Record<string, string> = signRequest(dev, { ...req, audience: node.publicKey });
  delete headers['x-form-audience'];
  assert.throws(() => verifyRequest(headers, req, { audience: node.publicKey }), code('AUTH_MISSING', /audience/));
});

// Exploit (issue 16): the cache dropped its oldest half when full, so a flood of fresh nonces let a
// captured request replay.
test('a flood of fresh nonces does not make a captured request replayable', () => {
  const node = generateKeyPair();
  const victim = generateKeyPair();
  const attacker = generateKeyPair();
  const req = { method: 'POST', path: '/vms/abc/stop', body: '' };
  const max = 50;
  const nonces = new NonceCache({ max });
  const captured = signRequest(victim, { ...req, audience: node.publicKey });
  verifyRequest(captured, req, { audience: node.publicKey, nonces });
  let refusedFlood = 0;
  for (let i = 0; i < max + 1; i++) {
    const h = signRequest(generateKeyPair(), { ...req, audience: node.publicKey });
    try {
      verifyRequest(h, req, { audience: node.publicKey, nonces });
    } catch (e) {
      assert.ok(code('UNAVAILABLE', /replay guard is full/)(e), String(e));
      refusedFlood++;
    }
  }
  assert.ok(refusedFlood >= 1, 'the cache refuses new requests when full');
  assert.throws(() => verifyRequest(captured, req, { audience: node.publicKey, nonces }), code('AUTH_REPLAYED'));
  // One signer cannot fill the whole cache either.
  const perSigner = new NonceCache({ max: 1000, perSigner: 5 });
  for (let i = 0; i < 5; i++)
    verifyRequest(signRequest(attacker, { ...req, audience: node.publicKey }), req, {
      audience: node.publicKey,
      nonces: perSigner,
    });
  assert.throws(
    () =>
      verifyRequest(signRequest(attacker, { ...req, audience: node.publicKey }), req, {
        audience: node.publicKey,
        nonces: perSigner,
      }),
    code('RATE_LIMITED'),
  );
  verifyRequest(signRequest(victim, { ...req, audience: node.publicKey }), req, {
    audience: node.publicKey,
    nonces: perSigner,
  });
  // Once its requests' timestamps leave the window, the same key may sign again.
  const later = Date.now() + 5 * 60_000 + 1_000;
  verifyRequest(signRequest(attacker, { ...req, audience: node.publicKey }, later), req, {
    audience: node.publicKey,
    nonces: perSigner,
    now: later,
  });
});

test('nonces are kept until their timestamp leaves the skew window, then forgotten', () => {
  const node = generateKeyPair();
  const dev = generateKeyPair();
  const req = { method: 'POST', path: '/x', body: '' };
  const t0 = 1_000_000_000_000;
  const nonces = new NonceCache({ max: 2, perSigner: 10, since: 0 });
  const skew = 60_000;
  const opts = (now: number) => ({ audience: node.publicKey, nonces, now, maxSkewMs: skew });
  const a = signRequest(dev, { ...req, audience: node.publicKey }, t0);
  verifyRequest(a, req, opts(t0));
  verifyRequest(signRequest(dev, { ...req, audience: node.publicKey }, t0), req, opts(t0));
  // Full, and both nonces still inside the window: refused rather than forgotten.
  assert.throws(
    () => verifyRequest(signRequest(dev, { ...req, audience: node.publicKey }, t0 + skew), req, opts(t0 + skew)),
    code('UNAVAILABLE'),
  );
  assert.throws(() => verifyRequest(a, req, opts(t0 + skew)), code('AUTH_REPLAYED'));
  // Past the window the old nonces go (and `a` is refused as expired, not replayable).
  const later = t0 + skew + 2_000;
  verifyRequest(signRequest(dev, { ...req, audience: node.publicKey }, later), req, opts(later));
  assert.throws(() => verifyRequest(a, req, opts(later)), code('AUTH_EXPIRED'));
});

// A restart empties the cache: a request captured before it must not replay to the new process.
test('a request signed before the cache (the node process) started is refused', () => {
  const node = generateKeyPair();
  const dev = generateKeyPair();
  const req = { method: 'DELETE', path: '/vms/abc', body: '' };
  const captured = signRequest(dev, { ...req, audience: node.publicKey }, Date.now() - 1_000);
  verifyRequest(captured, req, { audience: node.publicKey, nonces: new NonceCache({ since: Date.now() - 2_000 }) });
  const restarted = new NonceCache();
  assert.throws(
    () => verifyRequest(captured, req, { audience: node.publicKey, nonces: restarted }),
    code('AUTH_EXPIRED', /signed before this node started/),
  );
  verifyRequest(signRequest(dev, { ...req, audience: node.publicKey }), req, {
    audience: node.publicKey,
    nonces: restarted,
  });
});
