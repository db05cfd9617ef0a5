// A small RFC 8555 (ACME) client for the node's side of `HTTPS <port> TERMINATE=ingress`: account,
// order, HTTP-01 challenges (answered by this node's ingress on :80), finalize with a CSR, download.
// JWS ES256 with node:crypto; the CSR is made by openssl (already a node prerequisite). No dependency.
import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';

const run = promisify(execFile);
const b64u = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

export interface AcmeClientOptions {
  /** The https URL of the RFC 8555 directory. */
  directory: string;
  /** PEM of the directory's own HTTPS CA (private/test CAs such as Pebble); default: the system's. */
  caPem?: string;
  /** The account key (P-256, PEM): the node keeps it under its data dir. */
  accountKeyPem: string;
  /** Publish / withdraw an HTTP-01 key authorization (served at /.well-known/acme-challenge/<token>). */
  challenge: { set(host: string, token: string, keyAuthorization: string): void; clear(token: string): void };
  /** Give up polling an order after this long (default 90 s). */
  timeoutMs?: number;
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/**
 * Obtain a certificate for `names` (the first is the subject) with the key `certKeyPem`: returns the
 * PEM chain. Throws a FormError (UNAVAILABLE) naming the step and the CA's problem document.
 *
 * @example
 * const chain = await acmeIssue({ directory, accountKeyPem, challenge }, ['web.example'], keyPem);
 */
export async function acmeIssue(o: AcmeClientOptions, names: readonly string[], certKeyPem: string): Promise<string> {
  const key = createPrivateKey(o.accountKeyPem);
  const full = key.export({ format: 'jwk' }) as { crv: string; kty: string; x: string; y: string };
  // The public members only, in the lexicographic order RFC 7638's thumbprint needs.
  const jwk = { crv: full.crv, kty: full.kty, x: full.x, y: full.y };
  const thumbprint = b64u(createHash('sha256').update(JSON.stringify(jwk)).digest());
  const deadline = Date.now() + (o.timeoutMs ?? 90_000);
  const http = (method: string, url: string, body?: string): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          ...(o.caPem ? { ca: o.caPem } : {}),
          headers: body ? { 'content-type': 'application/jose+json', 'content-length': Buffer.byteLength(body) } : {},
          timeout: 15_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 1 << 20) req.destroy(new Error('answer over 1 MiB'));
            else chunks.push(c);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout after 15 s')));
      req.on('error', reject);
      req.end(body);
    });
  const fail = (step: string, r: Reply | Error): never => {
    const why = r instanceof Error ? r.message : `${r.status} ${r.body.toString('utf8').slice(0, 300)}`;
    throw new FormError('UNAVAILABLE', `ACME ${step} failed at ${o.directory}: ${why}`, {
      hint: 'Check FORM_ACME_DIRECTORY (and FORM_ACME_CA_FILE for a private CA), and that the names resolve to this node.',
    });
  };
  const dirReply = await http('GET', o.directory).catch((e: Error) => fail('directory', e));
  if (dirReply.status !== 200) fail('directory', dirReply);
  const dir = JSON.parse(dirReply.body.toString('utf8')) as Record<string, string>;
  let nonce: string | undefined;
  const freshNonce = async () => {
    const r = await http('HEAD', dir.newNonce as string).catch((e: Error) => fail('newNonce', e));
    return String(r.headers['replay-nonce'] ?? '');
  };
  let kid: string | undefined;
  /** A signed POST (payload undefined = POST-as-GET); one retry on badNonce. */
  const post = async (step: string, url: string, payload: unknown, useJwk = false): Promise<Reply> => {
    for (let attempt = 0; ; attempt++) {
      nonce ??= await freshNonce();
      const protectedHeader = b64u(JSON.stringify({ alg: 'ES256', nonce, url, ...(useJwk ? { jwk } : { kid }) }));
      const body = payload === undefined ? '' : b64u(JSON.stringify(payload));
      const sig = sign('sha256', Buffer.from(`${protectedHeader}.${body}`), {
        key: key as KeyObject,
        dsaEncoding: 'ieee-p1363',
      });
      const r = await http(
        'POST',
        url,
        JSON.stringify({ protected: protectedHeader, payload: body, signature: b64u(sig) }),
      ).catch((e: Error) => fail(step, e));
      nonce = (r.headers['replay-nonce'] as string | undefined) ?? undefined;
      if (r.status === 400 && attempt < 3 && r.body.toString('utf8').includes('badNonce')) continue;
      if (r.status >= 400) fail(step, r);
      return r;
    }
  };
  const json = (r: Reply) => JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
  const poll = async (step: string, url: string, done: (s: string) => boolean): Promise<Record<string, unknown>> => {
    for (let wait = 250; ; wait = Math.min(wait * 2, 2000)) {
      const r = json(await post(step, url, undefined));
      if (done(String(r.status))) return r;
      if (r.status === 'invalid') fail(step, new Error(`invalid: ${JSON.stringify(r).slice(0, 400)}`));
      if (Date.now() > deadline) fail(step, new Error(`still ${r.status} after ${o.timeoutMs ?? 90_000} ms`));
      await new Promise((res) => setTimeout(res, wait));
    }
  };

  const acct = await post('newAccount', dir.newAccount as string, { termsOfServiceAgreed: true }, true);
  kid = String(acct.headers.location ?? '');
  const orderReply = await post('newOrder', dir.newOrder as string, {
    identifiers: names.map((value) => ({ type: 'dns', value })),
  });
  const orderUrl = String(orderReply.headers.location ?? '');
  const order = json(orderReply) as { authorizations: string[]; finalize: string };
  const tokens: string[] = [];
  try {
    for (const authzUrl of order.authorizations) {
      const authz = json(await post('authorization', authzUrl, undefined)) as {
        status: string;
        identifier: { value: string };
        challenges: Array<{ type: string; url: string; token: string }>;
      };
      if (authz.status === 'valid') continue;
      const ch = authz.challenges.find((c) => c.type === 'http-01');
      if (!ch) fail('authorization', new Error(`no http-01 challenge for ${authz.identifier.value}`));
      o.challenge.set(authz.identifier.value, ch!.token, `${ch!.token}.${thumbprint}`);
      tokens.push(ch!.token);
      await post('challenge', ch!.url, {});
      await poll(`authorization of ${authz.identifier.value}`, authzUrl, (s) => s === 'valid');
    }
  } finally {
    for (const t of tokens) o.challenge.clear(t);
  }
  const csr = await makeCsr(names, certKeyPem);
  await post('finalize', order.finalize, { csr: b64u(csr) });
  const final = await poll('order', orderUrl, (s) => s === 'valid');
  const cert = await post('certificate', String(final.certificate), undefined);
  const pem = cert.body.toString('utf8');
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) fail('certificate', new Error('not a PEM chain'));
  return pem;
}

/** A DER PKCS#10 request for `names` (subjectAltName = all of them), signed with `keyPem` (openssl). */
async function makeCsr(names: readonly string[], keyPem: string): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'form-csr-'));
  try {
    writeFileSync(join(dir, 'key.pem'), keyPem, { mode: 0o600 });
    await run('openssl', [
      'req',
      '-new',
      '-key',
      join(dir, 'key.pem'),
      '-subj',
      `/CN=${names[0]}`,
      '-addext',
      `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
      '-outform',
      'DER',
      '-out',
      join(dir, 'csr.der'),
    ]);
    return readFileSync(join(dir, 'csr.der'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
