// TLS that ends at the ingress (Formfile `HTTPS <port> TERMINATE=ingress`, issue 19): this node obtains
// a certificate for each such instance's names by ACME (FORM_ACME_DIRECTORY, HTTP-01 answered by its
// own ingress on :80), keeps the key under its data dir (0600), serves it to visitors on :443 and
// renews it when a third of its life is left. The node then sees those visitors' traffic in clear:
// that is what the owner asked for, and `form attest --https` says so.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { AcmeSettings } from '@formation/attest';
import type { Logger } from '@formation/service';
import { acmeIssue } from './acme-client.ts';

/** One instance whose TLS ends here, with every name it is reached by. */
export interface TerminatedInstance {
  id: string;
  hosts: readonly string[];
}

export interface IngressCertificates {
  /** Reconcile: issue or renew certificates for these instances (in the background, one at a time). */
  sync(instances: readonly TerminatedInstance[]): void;
  /** The TLS context for a host name, when its instance has a current certificate. */
  context(host: string): SecureContext | undefined;
  /** The HTTP-01 key authorization for `token` when this node asked the CA about `host`. */
  challenge(host: string, token: string): string | undefined;
  /** Per instance: the names, validity end, or the last error. */
  status(): Record<string, { names: string[]; notAfter?: string; error?: string }>;
  /** Resolves once nothing is being issued (tests). */
  idle(): Promise<void>;
  close(): void;
}

export interface IngressCertificatesOptions {
  /** Where keys, certificates and the ACME account key live (made 0700; files 0600). */
  dir: string;
  acme: AcmeSettings;
  logger: Logger;
  /** Wait after a failed issuance before the next try (doubles up to 1 h); default 30 s. */
  retryMs?: number;
}

/** What a name must look like to reach the CA (and openssl's argv): lower-case DNS. */
const NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const SAFE_ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Certificates for TERMINATE=ingress instances, kept under `dir/<instance>/{key,cert}.pem`.
 *
 * @example
 * const certs = startIngressCertificates({ dir: join(dataDir, 'node', 'ingress-tls'), acme, logger });
 * certs.sync([{ id, hosts: ['web.dev.formation.local'] }]);
 * startIngress({ ..., terminate: { context: certs.context, challenge: certs.challenge } });
 */
export function startIngressCertificates(o: IngressCertificatesOptions): IngressCertificates {
  const log = o.logger.child({ component: 'ingress-tls' });
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const accountFile = join(o.dir, 'account-key.pem');
  if (!existsSync(accountFile)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(accountFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  }
  const accountKeyPem = readFileSync(accountFile, 'utf8');
  const byHost = new Map<string, SecureContext>();
  const state = new Map<
    string,
    { names: string[]; notAfter?: string; error?: string; retryAt?: number; fails: number }
  >();
  const challenges = new Map<string, { host: string; keyAuthorization: string }>();
  const cache = new Map<string, { names: string; ctx: SecureContext; notAfter: string; renewAt: number }>();
  let wanted: TerminatedInstance[] = [];
  let busy: Promise<void> = Promise.resolve();
  let running = false;
  let closed = false;

  /** A stored certificate that covers exactly `names` and has more than a third of its life left. */
  const load = (id: string, names: string[]): { ctx: SecureContext; notAfter: string } | undefined => {
    const c = cache.get(id);
    if (c && c.names === JSON.stringify(names) && Date.now() < c.renewAt) return c;
    cache.delete(id);
    const keyFile = join(o.dir, id, 'key.pem');
    const certFile = join(o.dir, id, 'cert.pem');
    if (!existsSync(keyFile) || !existsSync(certFile)) return undefined;
    try {
      const key = readFileSync(keyFile, 'utf8');
      const cert = readFileSync(certFile, 'utf8');
      const x = new X509Certificate(cert);
      const sans = (x.subjectAltName ?? '')
        .split(', ')
        .filter((s) => s.startsWith('DNS:'))
        .map((s) => s.slice(4))
        .sort();
      if (JSON.stringify(sans) !== JSON.stringify(names)) return undefined;
      const from = Date.parse(x.validFrom);
      const to = Date.parse(x.validTo);
      if (Date.now() > to - (to - from) / 3) return undefined;
      if (!x.checkPrivateKey(createPrivateKey(key))) return undefined;
      const got = { ctx: createSecureContext({ key, cert }), notAfter: new Date(to).toISOString() };
      cache.set(id, { ...got, names: JSON.stringify(names), renewAt: to - (to - from) / 3 });
      return got;
    } catch {
      return undefined;
    }
  };

  const issue = async (id: string, names: string[]) => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
    const t = Date.now();
    const chain = await acmeIssue(
      {
        directory: o.acme.directory,
        ...(o.acme.caPem ? { caPem: o.acme.caPem } : {}),
        accountKeyPem,
        challenge: {
          set: (host, token, keyAuthorization) => challenges.set(token, { host, keyAuthorization }),
          clear: (token) => challenges.delete(token),
        },
      },
      names,
      keyPem,
    );
    const d = join(o.dir, id);
    mkdirSync(d, { recursive: true, mode: 0o700 });
    // Key first, then the certificate: a crash between leaves a pair that does not match (re-issued).
    writeFileSync(join(d, 'key.pem.new'), keyPem, { mode: 0o600 });
    renameSync(join(d, 'key.pem.new'), join(d, 'key.pem'));
    writeFileSync(join(d, 'cert.pem.new'), chain, { mode: 0o600 });
    renameSync(join(d, 'cert.pem.new'), join(d, 'cert.pem'));
    log.info({ instance: id, names, ms: Date.now() - t }, 'certificate issued for TLS at the ingress');
  };

  const reconcile = async () => {
    if (running || closed) return;
    running = true;
    try {
      const seen = new Set<string>();
      for (const inst of wanted) {
        if (closed) return;
        const names = [...new Set(inst.hosts.map((h) => h.toLowerCase()))].filter((h) => NAME.test(h)).sort();
        if (!SAFE_ID.test(inst.id) || names.length === 0) continue;
        seen.add(inst.id);
        let s = state.get(inst.id);
        if (!s || JSON.stringify(s.names) !== JSON.stringify(names)) {
          s = { names, fails: 0 };
          state.set(inst.id, s);
        }
        let got = load(inst.id, names);
        if (!got && (s.retryAt ?? 0) <= Date.now()) {
          try {
            await issue(inst.id, names);
            got = load(inst.id, names);
            if (!got) throw new Error('the issued certificate does not cover the names or match the key');
            s.fails = 0;
            delete s.error;
            delete s.retryAt;
          } catch (err) {
            s.fails++;
            s.error = (err as Error).message;
            s.retryAt = Date.now() + Math.min((o.retryMs ?? 30_000) * 2 ** (s.fails - 1), 3_600_000);
            log.warn({ instance: inst.id, names, err: s.error }, 'certificate for TLS at the ingress not issued');
          }
        }
        if (got) {
          s.notAfter = got.notAfter;
          for (const n of names) byHost.set(n, got.ctx);
        }
      }
      // Names no longer terminated here are no longer served (the files stay until the instance goes).
      const live = new Set(wanted.flatMap((w) => w.hosts.map((h) => h.toLowerCase())));
      for (const h of byHost.keys()) if (!live.has(h)) byHost.delete(h);
      for (const id of state.keys()) if (!seen.has(id)) state.delete(id);
    } finally {
      running = false;
    }
  };

  return {
    sync(instances) {
      wanted = [...instances];
      // A throw that escapes reconcile (a disk error) must not stop every later sync.
      busy = busy.then(reconcile).catch((err: unknown) => log.warn({ err }, 'ingress certificates not reconciled'));
    },
    context: (host) => byHost.get(host.toLowerCase()),
    challenge(host, token) {
      const c = challenges.get(token);
      return c && c.host === host.toLowerCase() ? c.keyAuthorization : undefined;
    },
    status: () =>
      Object.fromEntries(
        [...state].map(([id, s]) => [
          id,
          { names: s.names, ...(s.notAfter ? { notAfter: s.notAfter } : {}), ...(s.error ? { error: s.error } : {}) },
        ]),
      ),
    idle: () => busy,
    close() {
      closed = true;
    },
  };
}
