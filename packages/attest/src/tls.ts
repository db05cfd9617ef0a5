// The guest's HTTPS certificate bound to the attestation (issue 19). The guest makes the certificate key
// itself (uacme, in /run/form/tls) and the node puts the SHA-256 of the certificate's public key (SPKI)
// into the signed report, read through the agent like the guest's X25519 key. A visitor or the CLI then
// compares the key of the certificate it was actually served with the attested one: a certificate with
// any other key (one the ingress node obtained for the name itself, say) is refused.
import { createHash, X509Certificate } from 'node:crypto';
import { GUEST_CONTRACT } from '@formation/guest';
import { FormError } from '@formation/interface';
import type { AttestationReport } from './report.ts';

/** What `form-tls status` says, as the report carries it. */
export interface GuestTls {
  /** `starting` (no names yet) | `issuing` | `ready` | `failed`. */
  state: string;
  /** The names the certificate is for (those the node configured). */
  names: string[];
  /** SHA-256 (hex) of the served certificate's SubjectPublicKeyInfo (DER); null before the first one. */
  spkiSha256: string | null;
  notAfter: string | null;
  issuedAt: string | null;
  error: string | null;
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Parse `form-tls status` (key=value lines). Null when it is not that shape.
 *
 * @example
 * parseTlsStatus('state=ready\nnames=a.example b.example\nspki_sha256=ab…\nerror=\n')?.names // ['a.example', 'b.example']
 */
export function parseTlsStatus(text: string): GuestTls | null {
  const kv = new Map<string, string>();
  for (const line of String(text).split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const state = kv.get('state');
  if (!state || !/^[a-z]{1,16}$/.test(state)) return null;
  const spki = kv.get('spki_sha256') ?? '';
  if (spki !== '' && !HEX64.test(spki)) return null;
  const names = (kv.get('names') ?? '').split(/\s+/).filter(Boolean).slice(0, 32);
  const opt = (k: string) => {
    const v = kv.get(k);
    return v ? v.slice(0, 300) : null;
  };
  return {
    state,
    names,
    spkiSha256: spki || null,
    notAfter: opt('not_after'),
    issuedAt: opt('issued_at'),
    error: opt('error'),
  };
}

/**
 * SHA-256 (hex) of a certificate's SubjectPublicKeyInfo, DER: what `form-tls status` prints
 * (`openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256`).
 *
 * @example
 * spkiSha256(readFileSync('cert.pem')) // '3f1c…'
 */
export function spkiSha256(cert: string | Buffer | X509Certificate): string {
  const x = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  const der = x.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

export interface ServedCertificateVerdict {
  ok: boolean;
  /** The served certificate's key hash. */
  spkiSha256: string;
  /** The attested one (null when the report has none). */
  attested: string | null;
  reason: string;
}

/**
 * Is the certificate a visitor was served for `host` the one whose key the attested guest holds?
 * Checks the key (SPKI hash) against the report's `tls`, that the report's names include `host`, and
 * that the certificate itself is for `host`. The report must already have passed `verifyReport`, and the
 * TLS client must have verified the chain (a public CA's, or the test's Pebble root): this function adds
 * what the chain cannot say, that the key belongs to the measured guest and not to a node on the path.
 * Never throws.
 *
 * @example
 * const v = verifyServedCertificate(report, tlsSocket.getPeerX509Certificate(), 'hello.example.net');
 * if (!v.ok) throw new FormError('TLS_KEY_NOT_ATTESTED', v.reason);
 */
export function verifyServedCertificate(
  report: Pick<AttestationReport, 'vmName' | 'tls'>,
  served: string | Buffer | X509Certificate,
  host: string,
): ServedCertificateVerdict {
  let x: X509Certificate;
  let spki: string;
  try {
    x = served instanceof X509Certificate ? served : new X509Certificate(served);
    spki = spkiSha256(x);
  } catch (err) {
    return { ok: false, spkiSha256: '', attested: null, reason: `not a certificate: ${(err as Error).message}` };
  }
  const tls = report.tls ?? null;
  const attested = tls?.spkiSha256 ?? null;
  const name = host.toLowerCase().replace(/\.$/, '');
  const fail = (reason: string): ServedCertificateVerdict => ({ ok: false, spkiSha256: spki, attested, reason });
  if (!tls || !attested) {
    return fail(
      `the attested guest of ${report.vmName} reports no TLS key (${tls ? `state ${tls.state}${tls.error ? `: ${tls.error}` : ''}` : 'no HTTPS in its Formfile, or an older image'})`,
    );
  }
  if (spki !== attested) {
    return fail(
      `the certificate served for ${name} has key ${spki.slice(0, 16)}…, but the attested guest of ${report.vmName} holds ${attested.slice(0, 16)}…: TLS does not end in the attested guest (a node on the path, or a stale certificate)`,
    );
  }
  if (!tls.names.includes(name)) {
    return fail(`${name} is not one of the names the guest's certificate was issued for (${tls.names.join(' ')})`);
  }
  if (x.checkHost(name) === undefined) return fail(`the served certificate is not valid for ${name}`);
  return {
    ok: true,
    spkiSha256: spki,
    attested,
    reason: `key ${spki.slice(0, 16)}… is the attested guest's (${report.vmName})`,
  };
}

/** `verifyServedCertificate` that throws `TLS_KEY_NOT_ATTESTED` when the certificate is not the guest's. */
export function assertServedCertificate(
  report: Pick<AttestationReport, 'vmName' | 'tls'>,
  served: string | Buffer | X509Certificate,
  host: string,
): ServedCertificateVerdict {
  const v = verifyServedCertificate(report, served, host);
  if (!v.ok) {
    throw new FormError('TLS_KEY_NOT_ATTESTED', `Cannot trust the HTTPS of ${host}: ${v.reason}`, {
      hint: 'Do not send anything secret there. Attest again (`form attest <instance>`): after a reboot the guest has a new key.',
    });
  }
  return v;
}

/** Where guests get their certificates: an RFC 8555 directory, and the CA of its own HTTPS if private. */
export interface AcmeSettings {
  /** e.g. https://acme-v02.api.letsencrypt.org/directory, or a test CA such as Pebble. */
  directory: string;
  /** PEM of the CA that signed the directory's HTTPS certificate (test CAs); absent = the guest's system CAs. */
  caPem?: string | undefined;
}

const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Runs a program in a guest (the VM manager's `exec`): what `configureGuestTls` needs of it. */
export interface GuestExec {
  exec(
    id: string,
    path: string,
    args: string[],
    timeoutMs?: number,
  ): Promise<{ exitcode: number; stdout: string; stderr: string }>;
}

/**
 * Tell a guest that serves HTTPS (Formfile `HTTPS`) its names and where to get certificates, through the
 * agent (`form-tls configure`). Idempotent: the guest answers `unchanged` and keeps its certificate when
 * nothing changed, and re-issues at once when the names changed. Only public data crosses: names, the
 * directory URL and a CA certificate; the key is made and kept in the guest.
 *
 * @example
 * await configureGuestTls(manager, vm.id, { directory: 'https://acme.example/dir' }, ['hello.dev.formation.net']);
 */
export async function configureGuestTls(
  vmm: GuestExec,
  vmId: string,
  acme: AcmeSettings,
  names: string[],
): Promise<'configured' | 'unchanged'> {
  if (!/^https:\/\/[A-Za-z0-9:/._~%?=&-]+$/.test(acme.directory)) {
    throw new FormError(
      'CONFIG_INVALID',
      `Cannot use ACME directory ${JSON.stringify(acme.directory)}: not an https:// URL`,
      {
        hint: 'Set the ACME directory to the https URL of an RFC 8555 directory (FORM_ACME_DIRECTORY).',
      },
    );
  }
  const wanted = [...new Set(names.map((n) => n.toLowerCase().replace(/\.$/, '')))];
  const bad = wanted.filter((n) => !DNS_NAME.test(n));
  if (wanted.length === 0 || wanted.length > 20 || bad.length > 0) {
    throw new FormError(
      'BAD_REQUEST',
      `Cannot configure HTTPS for VM ${vmId}: ${bad.length ? `not DNS names: ${bad.join(' ')}` : `${wanted.length} names (1 to 20)`}`,
    );
  }
  const ca = acme.caPem ? Buffer.from(acme.caPem).toString('base64') : '-';
  const r = await vmm.exec(vmId, GUEST_CONTRACT.tls, ['configure', acme.directory, ca, ...wanted], 60_000);
  if (r.exitcode === 3) {
    throw new FormError(
      'BAD_REQUEST',
      `Cannot configure HTTPS for VM ${vmId}: its image does not serve HTTPS (no HTTPS line in the Formfile)`,
    );
  }
  if (r.exitcode !== 0) {
    throw new FormError(
      'UNAVAILABLE',
      `Cannot configure HTTPS for VM ${vmId}: form-tls exited ${r.exitcode}: ${r.stderr.trim().slice(0, 300)}`,
    );
  }
  return r.stdout.trim() === 'unchanged' ? 'unchanged' : 'configured';
}

export interface ServedCertificate {
  /** The leaf certificate the server presented for `host`. */
  cert: X509Certificate;
  /** The TLS client verified its chain (system CAs, or `ca`) and the name. */
  authorized: boolean;
  /** Why not, when not authorized. */
  authorizationError: string | null;
}

/**
 * Connect to `host` on :443 (or `address`/`port`, like curl's --resolve) with SNI `host` and return the
 * certificate presented, with whether its chain verified. Throws `UNAVAILABLE` when no TLS session comes up.
 *
 * @example
 * const s = await fetchServedCertificate('hello.example.net');
 * verifyServedCertificate(report, s.cert, 'hello.example.net');
 */
export async function fetchServedCertificate(
  host: string,
  o: {
    address?: string | undefined;
    port?: number | undefined;
    ca?: string | Buffer | undefined;
    timeoutMs?: number;
  } = {},
): Promise<ServedCertificate> {
  const { connect } = await import('node:tls');
  return new Promise((resolve, reject) => {
    const s = connect({
      host: o.address ?? host,
      port: o.port ?? 443,
      servername: host,
      rejectUnauthorized: false,
      ...(o.ca ? { ca: o.ca } : {}),
    });
    const timer = setTimeout(
      () => s.destroy(new Error(`no TLS session after ${o.timeoutMs ?? 10_000} ms`)),
      o.timeoutMs ?? 10_000,
    );
    s.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = s.getPeerX509Certificate();
      const authorized = s.authorized;
      const authorizationError = s.authorizationError ? String(s.authorizationError) : null;
      s.end();
      if (!cert)
        reject(new FormError('UNAVAILABLE', `Cannot check the HTTPS of ${host}: the server sent no certificate`));
      else resolve({ cert, authorized, authorizationError });
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(new FormError('UNAVAILABLE', `Cannot check the HTTPS of ${host}: ${err.message}`));
    });
  });
}
