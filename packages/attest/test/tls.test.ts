// The served HTTPS certificate checked against the attested guest's key (issue 19). The exploit: the
// node that carries a visitor's traffic answers the name's DNS and holds :443, so it can pass a public
// CA's challenge itself and end TLS with a valid certificate of its own; only the attested key tells
// the visitor that TLS did not end in the guest.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair, randomHex } from '@formation/identity';
import { FormError } from '@formation/interface';
import {
  assertServedCertificate,
  expectedMeasurement,
  parseTlsStatus,
  signReport,
  spkiSha256,
  verifyReport,
  verifyServedCertificate,
} from '../src/index.ts';
import { MANIFEST, unsignedReport } from './fixtures/report.ts';

const dir = mkdtempSync(join(tmpdir(), 'fdh-attest-tls-'));
/** A certificate for `names` with a fresh P-256 key, signed by `ca` (or self-signed). */
function cert(tag: string, names: string[], ca?: string): string {
  const key = join(dir, `${tag}.key`);
  const out = join(dir, `${tag}.pem`);
  const san = `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`;
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key];
  if (!ca) {
    execFileSync(
      'openssl',
      ['req', '-x509', ...ec, '-out', out, '-days', '1', '-subj', `/CN=${names[0]}`, '-addext', san],
      { stdio: 'ignore' },
    );
  } else {
    execFileSync('openssl', ['req', '-new', ...ec, '-out', `${out}.csr`, '-subj', `/CN=${names[0]}`], {
      stdio: 'ignore',
    });
    execFileSync(
      'sh',
      [
        '-c',
        `printf '%s\\n' '${san}' > ${out}.ext && openssl x509 -req -in ${out}.csr -CA ${ca}.pem -CAkey ${ca}.key -CAcreateserial -days 1 -extfile ${out}.ext -out ${out}`,
      ],
      { stdio: 'ignore' },
    );
  }
  return readFileSync(out, 'utf8');
}
after(() => rmSync(dir, { recursive: true, force: true }));

const guestCert = cert('guest', ['hello.fdh.test', 'shop.example.com']);
const status = `state=ready\nnames=hello.fdh.test shop.example.com\nspki_sha256=${spkiSha256(guestCert)}\nnot_after=Dec  3 00:00:00 2031 GMT\nissued_at=2026-12-03T23:00:00Z\nerror=\n`;
const report = { vmName: 'hello-abc123', tls: parseTlsStatus(status) ?? undefined };

describe('the served certificate against the attested guest key', () => {
  it('parses form-tls status; refuses a malformed key hash', () => {
    assert.deepEqual(report.tls?.names, ['hello.fdh.test', 'shop.example.com']);
    assert.equal(report.tls?.state, 'ready');
    assert.equal(parseTlsStatus('state=ready\nspki_sha256=zz\n'), null);
    assert.equal(parseTlsStatus('garbage'), null);
    assert.equal(parseTlsStatus('state=issuing\nnames=a.test\nspki_sha256=\nerror=\n')?.spkiSha256, null);
  });

  it('exploit: a valid certificate for the name with another key (the ingress node’s own) is refused', () => {
    // The node got a certificate from the same CA as the guest would (here: a CA both chains end in).
    cert('ca', ['ca.test']);
    const nodeCert = cert('node', ['hello.fdh.test'], join(dir, 'ca'));
    const v = verifyServedCertificate(report, nodeCert, 'hello.fdh.test');
    assert.equal(v.ok, false);
    assert.match(v.reason, /TLS does not end in the attested guest/);
    assert.throws(
      () => assertServedCertificate(report, nodeCert, 'hello.fdh.test'),
      (e: FormError) =>
        e instanceof FormError &&
        e.code === 'TLS_KEY_NOT_ATTESTED' &&
        /Cannot trust the HTTPS of hello\.fdh\.test/.test(e.message),
    );
  });

  it('the guest’s certificate passes for each of its names; another name or no TLS in the report is refused', () => {
    assert.equal(verifyServedCertificate(report, guestCert, 'hello.fdh.test').ok, true);
    assert.equal(verifyServedCertificate(report, Buffer.from(guestCert), 'SHOP.example.com.').ok, true);
    const other = verifyServedCertificate(report, guestCert, 'evil.example.com');
    assert.equal(other.ok, false);
    assert.match(other.reason, /not one of the names/);
    const none = verifyServedCertificate({ vmName: 'x' }, guestCert, 'hello.fdh.test');
    assert.match(none.reason, /reports no TLS key/);
    assert.match(verifyServedCertificate(report, 'not a cert', 'hello.fdh.test').reason, /not a certificate/);
  });

  it('the key hash is in the signed report: changing it breaks the signature; the tls line does not fail a report', () => {
    const node = generateKeyPair();
    const nonce = randomHex(32);
    const signed = signReport(node.privateKey, unsignedReport(node.publicKey, { tls: report.tls }, nonce));
    const e = { nodePublicKey: node.publicKey, nonce, expected: expectedMeasurement(MANIFEST).inputs };
    const ok = verifyReport(signed, e);
    assert.equal(ok.ok, true, ok.reason);
    assert.match(ok.checks.find((c) => c.name === 'tls')?.detail ?? '', /HTTPS key sha256:/);
    const swapped = structuredClone(signed);
    if (swapped.report.tls) swapped.report.tls.spkiSha256 = spkiSha256(cert('swap', ['hello.fdh.test']));
    const bad = verifyReport(swapped, e);
    assert.equal(bad.ok, false);
    assert.deepEqual(
      bad.checks.filter((c) => !c.ok).map((c) => c.name),
      ['signature'],
    );
  });
});
