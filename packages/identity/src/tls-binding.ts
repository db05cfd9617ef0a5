import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import { FormError } from '@formation/interface';
import { sign, verify } from './keys.ts';

/**
 * A node's TLS certificate is self-signed and bound to its secp256k1 node key: the certificate carries
 * two subjectAltName URIs,
 *
 *   URI:form-node:<node public key, 33 bytes hex>
 *   URI:form-tls-sig:<node-key signature, 64 bytes hex>
 *
 * where the signature is over `FORM-TLS-BINDING-V1\n<sha256 hex of the certificate's DER
 * SubjectPublicKeyInfo>`. A client verifies the binding from the certificate alone, synchronously, on
 * every connection; the TLS handshake then proves the server holds the certificate's private key. So
 * whoever answers holds a TLS key the node key vouched for. No CA is involved.
 *
 * @example
 * const uris = tlsBindingUris(nodeKey, spkiDer);          // put in the cert's subjectAltName
 * verifyTlsBinding(certDer, { nodeKey: expected });      // on the client: the node key, or a FormError
 */
export const TLS_BINDING_DOMAIN = 'FORM-TLS-BINDING-V1';
const NODE_URI = 'form-node:';
const SIG_URI = 'form-tls-sig:';

/** Why a certificate was refused: the `details.tls` of the FormError. */
export type TlsRefusal = 'TLS_NO_BINDING' | 'TLS_BAD_BINDING' | 'TLS_CERT_EXPIRED' | 'TLS_WRONG_NODE' | 'TLS_BAD_CERT';

/** The message a node key signs to vouch for a TLS key (given as its DER SubjectPublicKeyInfo). */
export function tlsBindingMessage(spkiDer: Uint8Array): string {
  return `${TLS_BINDING_DOMAIN}\n${createHash('sha256').update(spkiDer).digest('hex')}`;
}

/** The two subjectAltName URIs binding the TLS key `spkiDer` to `nodeKey` (without the `URI:` prefix). */
export function tlsBindingUris(
  nodeKey: { privateKey: Uint8Array; publicKey: string },
  spkiDer: Uint8Array,
): { node: string; sig: string } {
  return {
    node: `${NODE_URI}${nodeKey.publicKey}`,
    sig: `${SIG_URI}${sign(nodeKey.privateKey, tlsBindingMessage(spkiDer))}`,
  };
}

/** The DER SubjectPublicKeyInfo of a public key (what the binding signs the hash of). */
export function spkiOf(publicKey: KeyObject): Buffer {
  return publicKey.export({ type: 'spki', format: 'der' });
}

/** The URIs of a subjectAltName string as Node prints it (`URI:a, DNS:b, …`); other kinds are skipped. */
export function sanUris(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(/,\s*/)
    .filter((e) => e.startsWith('URI:'))
    .map((e) => e.slice(4));
}

export interface VerifiedTlsBinding {
  /** The node public key the certificate is bound to. */
  nodeKey: string;
  /** sha256 hex of the certificate (DER), for logs. */
  fingerprint: string;
  validTo: Date;
}

function refuse(tls: TlsRefusal, message: string, hint: string, extra: Record<string, unknown> = {}): never {
  const code =
    tls === 'TLS_CERT_EXPIRED' ? 'AUTH_EXPIRED' : tls === 'TLS_WRONG_NODE' ? 'NET_BAD_PEER' : 'AUTH_BAD_SIGNATURE';
  throw new FormError(code, message, { hint, details: { tls, ...extra } });
}

/**
 * Check a peer certificate (DER bytes or an X509Certificate) against the Formation binding; returns the
 * node key it is bound to. Refuses, with a FormError whose `details.tls` says why:
 * - `TLS_BAD_CERT` (AUTH_BAD_SIGNATURE): not a parsable certificate;
 * - `TLS_NO_BINDING` (AUTH_BAD_SIGNATURE): no (or more than one) `form-node:` / `form-tls-sig:` URI;
 * - `TLS_BAD_BINDING` (AUTH_BAD_SIGNATURE): the signature does not verify for the named key over this
 *   certificate's public key (forged, or copied from another certificate);
 * - `TLS_CERT_EXPIRED` (AUTH_EXPIRED): outside its validity at `now`;
 * - `TLS_WRONG_NODE` (NET_BAD_PEER): a good binding, but to another key than `expected.nodeKey`.
 */
export function verifyTlsBinding(
  cert: Uint8Array | X509Certificate,
  expected: { nodeKey?: string | undefined; where?: string; now?: number } = {},
): VerifiedTlsBinding {
  const where = expected.where ?? 'the server';
  let x: X509Certificate;
  try {
    x = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  } catch (err) {
    refuse(
      'TLS_BAD_CERT',
      `Cannot trust ${where}: its certificate does not parse (${(err as Error).message})`,
      'It is not a Formation node.',
    );
  }
  const uris = sanUris(x.subjectAltName);
  const nodes = uris.filter((u) => u.startsWith(NODE_URI)).map((u) => u.slice(NODE_URI.length));
  const sigs = uris.filter((u) => u.startsWith(SIG_URI)).map((u) => u.slice(SIG_URI.length));
  if (nodes.length !== 1 || sigs.length !== 1) {
    refuse(
      'TLS_NO_BINDING',
      `Cannot trust ${where}: its certificate is not bound to a node key (${nodes.length} form-node and ${sigs.length} form-tls-sig URIs, expected one each)`,
      'It is not a Formation node, or something between you and it presents its own certificate.',
    );
  }
  const nodeKey = (nodes[0] as string).toLowerCase();
  const sig = sigs[0] as string;
  if (!/^0[23][0-9a-f]{64}$/.test(nodeKey)) {
    refuse(
      'TLS_NO_BINDING',
      `Cannot trust ${where}: its form-node URI is not a node public key`,
      'It is not a Formation node.',
    );
  }
  const message = tlsBindingMessage(spkiOf(x.publicKey));
  if (!verifiedOnce(nodeKey, message, sig)) {
    refuse(
      'TLS_BAD_BINDING',
      `Cannot trust ${where}: its certificate claims node ${short(nodeKey)} but that key did not sign its TLS key`,
      'Someone presents a forged or copied certificate: do not use this connection.',
      { presented: nodeKey },
    );
  }
  const now = expected.now ?? Date.now();
  const validFrom = new Date(x.validFrom);
  const validTo = new Date(x.validTo);
  if (!(now >= validFrom.getTime() && now <= validTo.getTime())) {
    refuse(
      'TLS_CERT_EXPIRED',
      `Cannot trust ${where}: its certificate is valid from ${validFrom.toISOString()} to ${validTo.toISOString()}, not now`,
      'The node renews it when it restarts (`form node down && form node up`); or check this clock.',
      { validFrom: validFrom.toISOString(), validTo: validTo.toISOString() },
    );
  }
  if (expected.nodeKey && expected.nodeKey.toLowerCase() !== nodeKey) {
    refuse(
      'TLS_WRONG_NODE',
      `Cannot trust ${where}: it is node ${nodeKey}, not the pinned node ${expected.nodeKey.toLowerCase()}`,
      'If that node was re-installed with a new key, check the new key on the node (`form node status`) and run `form kit init --node <url> --node-key <new key>`; otherwise something else answers at that address.',
      { expected: expected.nodeKey.toLowerCase(), presented: nodeKey },
    );
  }
  return { nodeKey, fingerprint: createHash('sha256').update(x.raw).digest('hex'), validTo };
}

/**
 * secp256k1 verification costs milliseconds and every connection presents the same few certificates:
 * remember (key, message, signature) triples that verified. Deterministic, so a hit is exactly the
 * verify it skips; failures are never remembered.
 */
const VERIFIED_MAX = 1024;
const verified = new Set<string>();
function verifiedOnce(nodeKey: string, message: string, sig: string): boolean {
  const id = `${nodeKey}\n${sig.toLowerCase()}\n${message}`;
  if (verified.has(id)) return true;
  if (!verify(nodeKey, message, sig)) return false;
  if (verified.size >= VERIFIED_MAX) verified.delete(verified.values().next().value as string);
  verified.add(id);
  return true;
}

function short(k: string): string {
  return `${k.slice(0, 10)}…`;
}
