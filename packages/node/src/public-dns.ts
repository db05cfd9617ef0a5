// The node's public names (issue 19): authoritative DNS on the public address for the network's
// domain (and for verified custom domains delegated here), answering with the public addresses of live
// ingress nodes (`publicAnswers`); and the verifier that checks pending custom-domain claims through
// the configured resolver and records what it saw as a signed `dns.verified`.
import type { KeyPair } from '@formation/identity';
import { createDnsResponder, type DnsResponder } from '@formation/net';
import type { Logger } from '@formation/service';
import type { StateStore } from '@formation/state';
import { type DomainLookup, evaluateProof, lookupDomain } from './domain-proof.ts';
import type { ExtraServicesContext } from './extra-services.ts';
import { publicAnswers, rotateAnswers } from './public-answers.ts';

/** The longest wait between two checks of one pending claim. */
export const MAX_VERIFY_BACKOFF_MS = 60_000;

export interface PublicDnsOptions {
  /** The node's public address. */
  host: string;
  /** UDP port (53; 0 picks a free one, for tests). */
  port: number;
  domain: string;
  store: Pick<StateStore, 'views' | 'author' | 'onAccepted'>;
  /** The node's key: signs its dns.verified ops. */
  key: KeyPair;
  nodeTimeoutMs: number;
  /** `host:port` of the resolver that plays "the internet" for proofs; unset = the host's. */
  resolver?: string;
  /** How a claim's DNS is read; default `lookupDomain` (node:dns through `resolver`). */
  lookup?: (name: string, resolver?: string) => Promise<DomainLookup>;
  /** How often pending claims are checked (ms); default 5000. */
  verifyEveryMs?: number;
  /** Answer TTL (s); short, so a dead node leaves answers quickly. Default 30. */
  ttl?: number;
  logger: Logger;
}

export interface PublicDns {
  responder: DnsResponder;
  /** Check every pending claim now (also runs on a timer); resolves when done. */
  verifyNow(): Promise<void>;
  close(): Promise<void>;
}

/** Start the public DNS responder and the custom-domain verifier. */
export async function startPublicDns(o: PublicDnsOptions): Promise<PublicDns> {
  const log = o.logger.child({ component: 'public-dns' });
  const opts = { domain: o.domain, nodeTimeoutMs: o.nodeTimeoutMs, self: o.key.publicKey };
  let turn = 0;
  const answer = (fqdn: string): string[] | undefined => {
    const a = publicAnswers(o.store.views(), fqdn, Date.now(), opts);
    return a.rcode === 'NOERROR' ? rotateAnswers(a.addresses, turn++) : undefined;
  };
  const responder = await createDnsResponder({
    host: o.host,
    port: o.port,
    domain: o.domain,
    ttl: o.ttl ?? 30,
    // In the zone: NXDOMAIN when unknown. Outside: only verified custom domains, else REFUSED.
    records: (name) => answer(`${name}.${o.domain}`),
    outside: (fqdn) => answer(fqdn),
    logger: o.logger,
  });

  const lastReason = new Map<string, string>();
  // Per claim: when to look again. Failures back off (x2, up to MAX_VERIFY_BACKOFF_MS) so that pending
  // claims nobody proves cost each node a few lookups a minute, not a stream.
  const nextCheck = new Map<string, { at: number; delay: number }>();
  const every = o.verifyEveryMs ?? 5000;
  let running: Promise<void> | undefined;
  const verifyOnce = async (): Promise<void> => {
    const v = o.store.views();
    if (!v.nodes.some((n) => n.id === o.key.publicKey)) return; // not admitted: our word would not count
    for (const d of v.domains) {
      if (d.state !== 'pending' || d.verifiedBy.some((x) => x.node === o.key.publicKey)) continue;
      const due = nextCheck.get(d.claim);
      if (due && Date.now() < due.at) continue;
      const targets = v.dns.filter((r) => r.instanceId === d.instanceId).map((r) => r.name);
      const result = evaluateProof(d, await (o.lookup ?? lookupDomain)(d.name, o.resolver), targets);
      if (!result.ok) {
        if (lastReason.get(d.claim) !== result.reason)
          log.info({ name: d.name, reason: result.reason }, 'domain not proven yet');
        lastReason.set(d.claim, result.reason);
        const delay = Math.min((due?.delay ?? every / 2) * 2, Math.max(every, MAX_VERIFY_BACKOFF_MS));
        nextCheck.set(d.claim, { at: Date.now() + delay, delay });
        continue;
      }
      try {
        o.store.author(o.key, 'dns.verified', { claim: d.claim, name: d.name, method: result.method });
        lastReason.delete(d.claim);
        nextCheck.delete(d.claim);
        log.info({ name: d.name, method: result.method }, 'domain verified');
      } catch (err) {
        log.warn({ err, name: d.name }, 'cannot record domain verification');
      }
    }
  };
  const verifyNow = (): Promise<void> => {
    running ??= verifyOnce()
      .catch((err: unknown) => log.warn({ err }, 'domain verification round failed'))
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void verifyNow(), every);
  timer.unref();
  // A new claim is checked at once, not at the next tick.
  const off = o.store.onAccepted((op) => {
    if (op.kind === 'dns.claim') setImmediate(() => void verifyNow());
  });
  return {
    responder,
    verifyNow,
    async close() {
      clearInterval(timer);
      off();
      await running;
      await responder.close();
    },
  };
}

/** formationd's part: the public DNS on `publicAddress:publicDnsPort`, closed with the node. */
export async function startPublicDnsOnPublic(ctx: ExtraServicesContext): Promise<string> {
  const host = ctx.config.publicAddress as string;
  const dns = await startPublicDns({
    host,
    port: ctx.config.publicDnsPort,
    domain: ctx.config.domain,
    store: ctx.store,
    key: ctx.key,
    nodeTimeoutMs: ctx.config.nodeTimeoutMs,
    ...(ctx.config.publicResolver ? { resolver: ctx.config.publicResolver } : {}),
    logger: ctx.logger,
  });
  ctx.onClose(() => dns.close());
  const at = dns.responder.address();
  return `running on udp ${at.address}:${at.port}, proofs via ${ctx.config.publicResolver ?? 'the host resolvers'}`;
}
