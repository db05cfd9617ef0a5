// `form attest --https`: the certificate served for the host must carry an attested replica's key.
// A real TLS server on loopback plays the served side; the replica results are as attestReplica returns
// them (the real report path runs in packages/node/test/attest-https-e2e.test.ts).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createServer, type Server } from 'node:tls';
import { parseTlsStatus, type ReplicaResult, spkiSha256 } from '@formation/attest';
import type { FormError } from '@formation/interface';
import { selfSignedCert } from '@formation/interface/testing';
import { checkHttps } from '../src/actions/attest.ts';

const dir = mkdtempSync(join(tmpdir(), 'fdh-cli-https-'));
const HOST = 'hello.fdh.test';
function cert(tag: string): { key: string; cert: string } {
  const { keyFile, certFile } = selfSignedCert(dir, tag, HOST, `DNS:${HOST}`);
  return { key: readFileSync(keyFile, 'utf8'), cert: readFileSync(certFile, 'utf8') };
}
const replica = (vm: string, pem: string, ok = true): ReplicaResult =>
  ({
    target: { url: 'http://node', nodePublicKey: '02ab', vm },
    verdict: { ok, checks: [], reason: ok ? '' : 'measurement: base disk differs' },
    report: {
      report: {
        vmName: vm,
        tls: parseTlsStatus(`state=ready\nnames=${HOST}\nspki_sha256=${spkiSha256(pem)}\nerror=\n`),
      },
      signature: '',
    },
    ms: 1,
  }) as unknown as ReplicaResult;

describe('form attest --https', () => {
  const guest = cert('guest');
  const other = cert('other');
  let server: Server;
  let port = 0;
  before(async () => {
    server = createServer({ key: guest.key, cert: guest.cert }, (s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const opts = () => ({ resolve: `127.0.0.1:${port}`, cacert: join(dir, 'guest.pem') });

  test('the served key is the second replica’s: PASS naming it, chain verified with --cacert', async () => {
    const r = await checkHttps(HOST, [replica('hello-a', other.cert), replica('hello-b', guest.cert)], opts());
    assert.equal(r.ok, true, r.reason);
    assert.equal(r.replica, 'hello-b');
    assert.equal(r.chain, true);
    assert.equal(r.spkiSha256, spkiSha256(guest.cert));
  });

  test('exploit: a served key no attested replica holds fails; so does a key of a replica that failed attestation', async () => {
    const r = await checkHttps(HOST, [replica('hello-a', other.cert)], opts());
    assert.equal(r.ok, false);
    assert.match(r.reason, /TLS does not end in the attested guest/);
    const failed = await checkHttps(HOST, [replica('hello-b', guest.cert, false)], opts());
    assert.equal(failed.ok, false);
    assert.match(failed.reason, /no replica passed attestation/);
  });

  test('TERMINATE=ingress: a served key that is no replica’s is reported as the ingress’s, never as the guest’s', async () => {
    const r = await checkHttps(HOST, [replica('hello-a', other.cert)], { ...opts(), ingressTls: true });
    assert.equal(r.ok, false);
    assert.equal(r.endsAt, 'ingress');
    assert.equal(r.replica, null);
    assert.equal(r.spkiSha256, spkiSha256(guest.cert), 'the key actually served');
    assert.match(
      r.reason,
      /ends at the ingress nodes .* not the attested guest's; the nodes see this traffic in clear/,
    );
    // The proof wins over the declaration: a served key that is an attested replica's still passes.
    const guestKey = await checkHttps(HOST, [replica('hello-b', guest.cert)], { ...opts(), ingressTls: true });
    assert.equal(guestKey.ok, true);
    assert.equal(guestKey.endsAt, 'guest');
    const plain = await checkHttps(HOST, [replica('hello-a', other.cert)], opts());
    assert.equal(plain.endsAt, 'unknown');
  });

  test('the right key over a chain the client cannot verify fails; a bad --resolve is CLI_USAGE', async () => {
    const r = await checkHttps(HOST, [replica('hello-b', guest.cert)], { resolve: `127.0.0.1:${port}` });
    assert.equal(r.ok, false);
    assert.equal(r.chain, false);
    await assert.rejects(
      checkHttps(HOST, [], { resolve: 'example.com' }),
      (e: FormError) => e.code === 'CLI_USAGE' && /--resolve example\.com/.test(e.message),
    );
  });
});
