import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormError } from '@formation/interface';
import { generateKeyPair, sign, spkiOf, tlsBindingMessage, tlsBindingUris, verifyTlsBinding } from '../src/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'form-tls-binding-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A self-signed P-256 certificate (openssl) with the given subjectAltName URIs. */
function makeCert(uris: (spki: Buffer) => string[], days = 30): { der: Buffer; key: KeyObject } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyFile = join(dir, `k${++n}.pem`);
  const certFile = join(dir, `c${n}.pem`);
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  const san = uris(spkiOf(createPublicKey(privateKey)));
  execFileSync('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    keyFile,
    '-days',
    String(days),
    '-subj',
    '/CN=test',
    '-out',
    certFile,
    '-outform',
    'DER',
    ...(san.length ? ['-addext', `subjectAltName=${san.map((u) => `URI:${u}`).join(',')}`] : []),
  ]);
  return { der: readFileSync(certFile), key: privateKey };
}

function refusedWith(fn: () => unknown, code: string, tls: string, text?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FormError, `not a FormError: ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal((err.details as { tls?: string }).tls, tls);
    if (text) assert.match(err.message, text);
    return true;
  });
}

const nodeA = generateKeyPair();
const nodeB = generateKeyPair();

test('a certificate bound to node A verifies as A, with or without expecting A', () => {
  const { der } = makeCert((spki) => Object.values(tlsBindingUris(nodeA, spki)));
  assert.equal(verifyTlsBinding(der).nodeKey, nodeA.publicKey);
  assert.equal(verifyTlsBinding(der, { nodeKey: nodeA.publicKey }).nodeKey, nodeA.publicKey);
  assert.match(verifyTlsBinding(der).fingerprint, /^[0-9a-f]{64}$/);
});

test('the binding message is domain-separated and names the sha256 of the SPKI', () => {
  const spki = Buffer.from('abc');
  // sha256("abc"), a known answer
  assert.equal(
    tlsBindingMessage(spki),
    'FORM-TLS-BINDING-V1\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
  );
});

test('exploit: a certificate claiming node A with a signature by another key is refused (TLS_BAD_BINDING)', () => {
  const { der } = makeCert((spki) => [
    `form-node:${nodeA.publicKey}`,
    `form-tls-sig:${sign(nodeB.privateKey, tlsBindingMessage(spki))}`,
  ]);
  refusedWith(
    () => verifyTlsBinding(der, { nodeKey: nodeA.publicKey }),
    'AUTH_BAD_SIGNATURE',
    'TLS_BAD_BINDING',
    /did not sign/,
  );
  // Refusals are never remembered (verifications that passed are): a second try is refused the same way.
  refusedWith(() => verifyTlsBinding(der), 'AUTH_BAD_SIGNATURE', 'TLS_BAD_BINDING');
});

test('exploit: node A’s binding copied onto a certificate with another TLS key (swapped) is refused', () => {
  const real = makeCert((spki) => Object.values(tlsBindingUris(nodeA, spki)));
  const uris = (real.der.toString('latin1').match(/form-(node|tls-sig):[0-9a-f]+/g) ?? []) as string[];
  assert.equal(uris.length, 2);
  const { der } = makeCert(() => uris);
  refusedWith(() => verifyTlsBinding(der, { nodeKey: nodeA.publicKey }), 'AUTH_BAD_SIGNATURE', 'TLS_BAD_BINDING');
});

test('exploit: node B’s genuine certificate where node A is expected is refused, naming both keys', () => {
  const { der } = makeCert((spki) => Object.values(tlsBindingUris(nodeB, spki)));
  refusedWith(
    () => verifyTlsBinding(der, { nodeKey: nodeA.publicKey }),
    'NET_BAD_PEER',
    'TLS_WRONG_NODE',
    new RegExp(`${nodeB.publicKey}.*${nodeA.publicKey}`),
  );
});

test('an expired (or not yet valid) certificate is refused (TLS_CERT_EXPIRED)', () => {
  const { der } = makeCert((spki) => Object.values(tlsBindingUris(nodeA, spki)), 1);
  refusedWith(() => verifyTlsBinding(der, { now: Date.now() + 2 * 86_400_000 }), 'AUTH_EXPIRED', 'TLS_CERT_EXPIRED');
  refusedWith(() => verifyTlsBinding(der, { now: Date.now() - 86_400_000 }), 'AUTH_EXPIRED', 'TLS_CERT_EXPIRED');
});

test('a certificate without a binding, or with two claims, is refused (TLS_NO_BINDING); garbage is TLS_BAD_CERT', () => {
  refusedWith(() => verifyTlsBinding(makeCert(() => []).der), 'AUTH_BAD_SIGNATURE', 'TLS_NO_BINDING');
  const two = makeCert((spki) => [...Object.values(tlsBindingUris(nodeA, spki)), `form-node:${nodeB.publicKey}`]);
  refusedWith(() => verifyTlsBinding(two.der), 'AUTH_BAD_SIGNATURE', 'TLS_NO_BINDING');
  const notKey = makeCert((spki) => [
    'form-node:zz',
    `form-tls-sig:${sign(nodeA.privateKey, tlsBindingMessage(spki))}`,
  ]);
  refusedWith(() => verifyTlsBinding(notKey.der), 'AUTH_BAD_SIGNATURE', 'TLS_NO_BINDING');
  refusedWith(() => verifyTlsBinding(Buffer.from('not a certificate')), 'AUTH_BAD_SIGNATURE', 'TLS_BAD_CERT');
});
