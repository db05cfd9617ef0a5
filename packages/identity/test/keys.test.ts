import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  addressOf,
  generateKeyPair,
  generateWireGuardKeyPair,
  keyPairFromPrivate,
  loadKey,
  NonceCache,
  saveKey,
  sign,
  signRequest,
  verify,
  verifyRequest,
  wireGuardKeyPairFromPrivate,
} from '../src/index.ts';

test('address of a known key matches the Ethereum derivation', () => {
  // Private key 1 -> the well-known address 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf.
  const k = keyPairFromPrivate('0000000000000000000000000000000000000000000000000000000000000001');
  assert.equal(k.address, '0x7e5f4552091a69125d5dfcb7b8c2659029395bdf');
  assert.equal(addressOf(k.publicKey), k.address);
});

test('sign/verify round trip and rejects a tampered message or another key', () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  const sig = sign(a.privateKey, 'hello');
  assert.equal(verify(a.publicKey, 'hello', sig), true);
  assert.equal(verify(a.publicKey, 'hellp', sig), false);
  assert.equal(verify(b.publicKey, 'hello', sig), false);
  assert.equal(verify(a.publicKey, 'hello', 'zz'), false);
  assert.equal(verify('nothex', 'hello', sig), false);
});

test('invalid private keys are refused with KEY_INVALID', () => {
  assert.throws(
    () => keyPairFromPrivate('00'.repeat(32)),
    (e: unknown) => e instanceof FormError && e.code === 'KEY_INVALID',
  );
  assert.throws(
    () => keyPairFromPrivate('abc'),
    (e: unknown) => e instanceof FormError && e.code === 'KEY_INVALID',
  );
});

test('signed request verifies and yields the signer address', () => {
  const k = generateKeyPair();
  const req = { method: 'POST', path: '/vms', body: '{"a":1}', audience: 'node-a' };
  const headers = signRequest(k, req);
  const signer = verifyRequest(headers, req, { audience: 'node-a', nonces: new NonceCache({ since: 0 }) });
  assert.equal(signer.address, k.address);
});

test('signed request: tampered body, path, method, missing headers, expired, replayed', () => {
  const k = generateKeyPair();
  const req = { method: 'POST', path: '/vms', body: '{"a":1}', audience: 'node-a' };
  const headers = signRequest(k, req);
  const aud = { audience: 'node-a' };
  const code = (c: string) => (e: unknown) => e instanceof FormError && e.code === c;
  assert.throws(() => verifyRequest(headers, { ...req, body: '{"a":2}' }, aud), code('AUTH_BAD_SIGNATURE'));
  assert.throws(() => verifyRequest(headers, { ...req, path: '/vms/x' }, aud), code('AUTH_BAD_SIGNATURE'));
  assert.throws(() => verifyRequest(headers, { ...req, method: 'DELETE' }, aud), code('AUTH_BAD_SIGNATURE'));
  assert.throws(() => verifyRequest({}, req, aud), code('AUTH_MISSING'));
  assert.throws(() => verifyRequest(headers, req, { ...aud, now: Date.now() + 3_600_000 }), code('AUTH_EXPIRED'));
  const other = generateKeyPair();
  assert.throws(
    () => verifyRequest({ ...headers, 'x-form-public-key': other.publicKey }, req, aud),
    code('AUTH_BAD_SIGNATURE'),
  );
  const nonces = new NonceCache({ since: 0 });
  verifyRequest(headers, req, { ...aud, nonces });
  assert.throws(() => verifyRequest(headers, req, { ...aud, nonces }), code('AUTH_REPLAYED'));
});

test('keystore writes 0600, refuses overwrite without force, round trips', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'form-id-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'keys', 'developer.json');
  const k = generateKeyPair();
  await saveKey(k, path);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await loadKey(path)).address, k.address);
  await assert.rejects(
    saveKey(generateKeyPair(), path),
    (e: unknown) => e instanceof FormError && e.code === 'KEY_EXISTS',
  );
  assert.equal((await loadKey(path)).address, k.address, 'existing key untouched');
  await saveKey(generateKeyPair(), path, true);
  assert.notEqual((await loadKey(path)).address, k.address);
  await assert.rejects(
    loadKey(join(dir, 'none.json')),
    (e: unknown) => e instanceof FormError && e.code === 'KEY_NOT_FOUND',
  );
  assert.match(await readFile(path, 'utf8'), /"kind": "secp256k1"/);
});

test('wireguard keys are clamped and derive the public key', () => {
  const k = generateWireGuardKeyPair();
  assert.equal(Buffer.from(k.privateKey, 'base64').length, 32);
  assert.equal(wireGuardKeyPairFromPrivate(k.privateKey).publicKey, k.publicKey);
  // Known vector (RFC 7748 style): all-zero key after clamping has a fixed public key.
  const z = wireGuardKeyPairFromPrivate(Buffer.alloc(32).toString('base64'));
  assert.equal(Buffer.from(z.privateKey, 'base64')[31], 64);
});
