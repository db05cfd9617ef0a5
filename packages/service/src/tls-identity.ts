import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type KeyPair, spkiOf, tlsBindingUris, verifyTlsBinding } from '@formation/identity';
import { FormError } from '@formation/interface';

const run = promisify(execFile);

/** A node's TLS key and self-signed certificate (PEM), bound to its node key (see `@formation/identity` tls-binding). */
export interface TlsIdentity {
  key: string;
  cert: string;
  nodeKey: string;
  /** sha256 hex of the certificate DER. */
  fingerprint: string;
  validTo: Date;
  /** True when this call made (or renewed) the certificate. */
  created: boolean;
}

/** Days a certificate lasts; it is renewed at start when fewer than `RENEW_DAYS` are left. */
export const TLS_CERT_DAYS = 397;
export const TLS_RENEW_DAYS = 30;

/**
 * Load the node's TLS identity from `dir` (`tls-key.pem`, `tls-cert.pem`, both 0600), or make one: a
 * fresh P-256 key, and a self-signed X.509 certificate (openssl) whose subjectAltName binds it to
 * `nodeKey`. A stored certificate that is not bound to this node key (the key was replaced), does not
 * match the stored TLS key, or expires within 30 days is replaced.
 *
 * @example
 * const tls = await loadOrCreateTlsIdentity(join(dataDir, 'node'), nodeKey);
 * https.createServer({ key: tls.key, cert: tls.cert }, app.routing);
 */
export async function loadOrCreateTlsIdentity(
  dir: string,
  nodeKey: KeyPair,
  opts: { days?: number; now?: number } = {},
): Promise<TlsIdentity> {
  const keyFile = join(dir, 'tls-key.pem');
  const certFile = join(dir, 'tls-cert.pem');
  const now = opts.now ?? Date.now();
  if (existsSync(keyFile) && existsSync(certFile)) {
    const key = readFileSync(keyFile, 'utf8');
    const cert = readFileSync(certFile, 'utf8');
    const ok = checkStored(key, cert, nodeKey.publicKey, now + TLS_RENEW_DAYS * 86_400_000);
    if (ok) return { key, cert, nodeKey: nodeKey.publicKey, ...ok, created: false };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const uris = tlsBindingUris(nodeKey, spkiOf(createPublicKey(privateKey)));
  const tmpKey = `${keyFile}.${process.pid}.tmp`;
  const tmpCert = `${certFile}.${process.pid}.tmp`;
  writeFileSync(tmpKey, keyPem, { mode: 0o600 });
  try {
    await run('openssl', [
      'req',
      '-x509',
      '-new',
      '-key',
      tmpKey,
      '-sha256',
      '-days',
      String(opts.days ?? TLS_CERT_DAYS),
      '-subj',
      `/CN=form-node-${nodeKey.publicKey.slice(0, 16)}`,
      '-addext',
      `subjectAltName=URI:${uris.node},URI:${uris.sig}`,
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'keyUsage=critical,digitalSignature',
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-out',
      tmpCert,
    ]);
  } catch (err) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new FormError(
      'HOST_UNSUPPORTED',
      `Cannot make the node's TLS certificate: ${missing ? 'openssl is not installed' : (err as { stderr?: string }).stderr?.trim() || (err as Error).message}`,
      { hint: missing ? 'Install it (`apt-get install openssl`, or run scripts/setup.sh).' : undefined },
    );
  }
  chmodSync(tmpCert, 0o600);
  const cert = readFileSync(tmpCert, 'utf8');
  // Never keep a certificate we would refuse ourselves.
  const checked = checkStored(keyPem, cert, nodeKey.publicKey, Date.now());
  if (!checked) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    throw new FormError('INTERNAL', 'Cannot make the node TLS certificate: the one openssl made does not verify');
  }
  renameSync(tmpKey, keyFile);
  renameSync(tmpCert, certFile);
  return { key: keyPem, cert, nodeKey: nodeKey.publicKey, ...checked, created: true };
}

/** A pair we may serve: bound to this node key, the key matches the cert, and still valid at `at`. */
function checkStored(
  keyPem: string,
  certPem: string,
  nodeKey: string,
  at: number,
): { fingerprint: string; validTo: Date } | null {
  try {
    const x = new X509Certificate(certPem);
    if (!x.checkPrivateKey(createPrivateKey(keyPem))) return null;
    const v = verifyTlsBinding(x, { nodeKey, now: at });
    return { fingerprint: v.fingerprint, validTo: v.validTo };
  } catch {
    return null; // unreadable, unbound, mismatched or expiring: make a new one
  }
}
