import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sign, verify } from '@formation/identity';
import {
  canonicalJson,
  createOp,
  encodeOp,
  hashOp,
  openStateStore,
  VerifyPool,
  verifyOpSignature,
} from '../src/index.ts';
import { key } from './helpers.ts';

test('canonical JSON sorts keys, has no whitespace, refuses floats and undefined', () => {
  assert.equal(
    canonicalJson({ b: 1, a: [true, 'x', null], c: { z: 'é"', y: -3 } }),
    '{"a":[true,"x",null],"b":1,"c":{"y":-3,"z":"é\\""}}',
  );
  assert.throws(() => canonicalJson({ a: 1.5 }), /safe integers/);
  assert.throws(() => canonicalJson({ a: undefined }), /undefined/);
  assert.throws(() => canonicalJson(new Date()), /non-plain/);
  assert.throws(() => canonicalJson(-0), /safe integers/);
});

test('README test vector: encoding, hash and signature of a fixed op', () => {
  const k = key(0); // private key 0x…01
  const op = createOp(k, 'node.heartbeat', { status: 'healthy' }, [], 1700000000000);
  assert.equal(
    encodeOp(op),
    '{"author":"0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","body":{"status":"healthy"},"deps":[],"kind":"node.heartbeat","ts":1700000000000,"v":1}',
  );
  assert.equal(op.hash, hashOp(op));
  assert.equal(op.hash, VECTOR_HASH);
  assert.equal(op.sig, VECTOR_SIG);
});

test('fast op verifier agrees with @formation/identity verify (valid, forged, tampered, high-s)', () => {
  const k = key(1);
  for (let i = 0; i < 20; i++) {
    const msg = `{"i":${i}}`;
    const sig = sign(k.privateKey, msg);
    assert.equal(verifyOpSignature(k.publicKey, msg, sig), true);
    assert.equal(verify(k.publicKey, msg, sig), true);
    assert.equal(verifyOpSignature(k.publicKey, `${msg} `, sig), false);
    assert.equal(verifyOpSignature(key(2).publicKey, msg, sig), false);
    // the same signature with s' = n - s verifies in plain ECDSA; both verifiers refuse it (malleability)
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
    const high = sig.slice(0, 64) + (n - BigInt(`0x${sig.slice(64)}`)).toString(16).padStart(64, '0');
    assert.equal(verifyOpSignature(k.publicKey, msg, high), false);
    assert.equal(verify(k.publicKey, msg, high), false);
  }
  assert.equal(verifyOpSignature('02'.padEnd(66, 'f'), 'x', '0'.repeat(128)), false);
  assert.equal(verifyOpSignature(k.publicKey, 'x', 'zz'), false);
});

const VECTOR_HASH = '600d02e4bde03d78d1ef46a50434a319a83e75fcbeb2137cae435022bc599549';
const VECTOR_SIG =
  'af5b277078bb7ac2bc8af4bd2a3dcba61e5f2cba62c3deb275dbddd1b260366c61c566ace1b92cbcb51d7cadec27ea20b5f18c1a4362a120719c44460e84bee5';

test('worker-thread verification gives the same verdicts as inline, forged ones included', () => {
  const k = key(3);
  const checks = Array.from({ length: 300 }, (_, i) => {
    const op = createOp(k, 'account.update', { name: `n${i}` }, [], i);
    const bytes = encodeOp(op);
    return { author: k.publicKey, bytes: i % 7 === 0 ? `${bytes} ` : bytes, sig: op.sig };
  });
  const pool = new VerifyPool(1, 64);
  try {
    const got = pool.verifyAll(checks);
    assert.deepEqual(
      got,
      checks.map((c) => verifyOpSignature(c.author, c.bytes, c.sig)),
    );
    assert.equal(got.filter((x) => !x).length, 43);
  } finally {
    pool.close();
  }
});

test('a big batch with forged signatures: forged ones rejected, the rest accepted', () => {
  const k = key(4);
  const s = openStateStore({ path: ':memory:', verifyThreads: 1 });
  const ops = Array.from({ length: 200 }, (_, i) => createOp(k, 'account.update', { name: `n${i}` }, [], i));
  const forged = ops.map((o, i) => (i % 10 === 0 ? { ...o, sig: ops[(i + 1) % ops.length]!.sig } : o));
  const r = s.applyBatch(forged);
  assert.equal(r.accepted.length, 180);
  assert.equal(r.rejected.length, 20);
  assert.ok(r.rejected.every((x) => x.code === 'AUTH_BAD_SIGNATURE'));
  s.close();
});
