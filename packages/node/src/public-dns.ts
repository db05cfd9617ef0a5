// The node's public names (issue 19): authoritative DNS on the public address for the network's
// domain (and for verified custom domains delegated here), answering with the public addresses of live
// ingress nodes (`publicAnswers`); and the verifier that checks pending custom-domain claims through
// the configured resolver and records what it saw as a signed `dns.verified`.
import { join } from 'node:path';
import type { KeyPair } from '@formation/identity';
import {
  createDnsResponder,
  DEFAULT_PUBLIC_DNS_TCP,
  DEFAULT_RESPONSE_RATE_LIMITS,
  type DnsResponder,
  type ResponseRateLimits,
} from '@formation/net';
import type { Logger } from '@formation/service';
import type { DomainView, StateStore } from '@formation/state';
import { nodePaths } from './config.ts';
import { type DomainLookup, evaluateProof, lookupDomain } from './domain-proof.ts';
import type { ExtraServicesContext } from './extra-services.ts';
import { followState } from './follow-state.ts';
import { fileMissingSince, memoryMissingSince } from './missing-since.ts';
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
  /**
   * The longest wait between two looks at a claim that failed its proof (ms); default
   * MAX_VERIFY_BACKOFF_MS (never shorter than `verifyEveryMs`).
   */
  maxVerifyBackoffMs?: number;
  /** How often the proof of a claim this node vouched for is looked at again (ms); default 300000. */
  recheckEveryMs?: number;
  /**
   * How long that proof may be missing (seen absent at every re-check, never merely unreadable) before
   * this node records `dns.lapsed` (ms); default 3600000.
   */
  graceMs?: number;
  /**
   * Where the missing-since times are kept across restarts (formationd: `<dataDir>/node/domain-proofs.json`);
   * unset = in memory, so a restart starts every grace period again.
   */
  graceFile?: string;
  /** Answer TTL (s); short, so a dead node leaves answers quickly. Default 30. */
  ttl?: number;
  /** Answers per second per source network (default 20, burst twice it); see `@formation/net` dns-limits. */
  ratePerSecond?: number;
  /** Other rate-limit settings (tests). */
  rateLimits?: Partial<ResponseRateLimits>;
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
    // On a public address: rate limited per source network, TC=1 slips, TCP for the resolvers that retry.
    public: {
      rate: {
        ...DEFAULT_RESPONSE_RATE_LIMITS,
        ...(o.ratePerSecond ? { perSourcePerSecond: o.ratePerSecond, perSourceBurst: 2 * o.ratePerSecond } : {}),
        ...o.rateLimits,
      },
      ...DEFAULT_PUBLIC_DNS_TCP,
    },
    logger: o.logger,
  });

  const lastReason = new Map<string, string>();
  // Per claim: when to look again. Failures back off (x2, up to MAX_VERIFY_BACKOFF_MS) so that pending
  // claims nobody proves cost each node a few lookups a minute, not a stream.
  const nextCheck = new Map<string, { at: number; delay: number }>();
  // Claims this node vouched for: when to look again, and since when the proof has been missing.
  const nextRecheck = new Map<string, number>();
  const missingSince = o.graceFile ? fileMissingSince(o.graceFile, log) : memoryMissingSince();
  const every = o.verifyEveryMs ?? 5000;
  const maxBackoff = Math.max(every, o.maxVerifyBackoffMs ?? MAX_VERIFY_BACKOFF_MS);
  const recheckEvery = o.recheckEveryMs ?? 300_000;
  const grace = o.graceMs ?? 3_600_000;
  const me = o.key.publicKey;
  const look = (name: string) => (o.lookup ?? lookupDomain)(name, o.resolver);
  let running: Promise<void> | undefined;

  /** A claim this node vouched for: is the proof still there? Gone for `grace` → dns.lapsed. */
  const recheck = async (d: DomainView, targets: string[]): Promise<void> => {
    const now = Date.now();
    if (now < (nextRecheck.get(d.claim) ?? 0)) return;
    nextRecheck.set(d.claim, now + recheckEvery);
    const lookup = await look(d.name);
    const result = evaluateProof(d, lookup, targets);
    if (result.ok) {
      if (missingSince.delete(d.claim)) log.info({ name: d.name }, 'domain proof seen again');
      return;
    }
    // The resolver failed (timeout, SERVFAIL) and said nothing: that is not an absent proof.
    if (lookup.errors.length > 0 && lookup.txt.length === 0 && lookup.cname.length === 0) {
      log.warn({ name: d.name, errors: lookup.errors }, 'cannot re-check domain proof: resolver failed');
      return;
    }
    const since = missingSince.get(d.claim) ?? now;
    if (!missingSince.has(d.claim)) {
      missingSince.set(d.claim, since);
      log.warn(
        { name: d.name, reason: result.reason, graceMs: grace },
        'domain proof missing: lapses after the grace period',
      );
    }
    if (now - since < grace) {
      nextRecheck.set(d.claim, Math.min(now + recheckEvery, since + grace));
      return;
    }
    try {
      o.store.author(o.key, 'dns.lapsed', { claim: d.claim, name: d.name, reason: printable(result.reason) });
      missingSince.delete(d.claim);
      nextRecheck.delete(d.claim);
      nextCheck.delete(d.claim);
      log.warn({ name: d.name, reason: result.reason }, 'domain lapsed');
    } catch (err) {
      log.warn({ err, name: d.name }, 'cannot record domain lapse');
    }
  };

  const verifyOnce = async (): Promise<void> => {
    const v = o.store.views();
    if (!v.nodes.some((n) => n.id === me)) return; // not admitted: our word would not count
    for (const d of v.domains) {
      const targets = v.dns.filter((r) => r.instanceId === d.instanceId).map((r) => r.name);
      if (d.verifiedBy.some((x) => x.node === me)) {
        await recheck(d, targets);
        continue;
      }
      // Look for a proof: a claim nobody verified yet, or one lapsed (by us, or by the quorum).
      const lapsedByMe = d.lapsedBy.some((x) => x.node === me);
      if (!lapsedByMe && d.state !== 'pending' && d.state !== 'lapsed') continue;
      const due = nextCheck.get(d.claim);
      if (due && Date.now() < due.at) continue;
      const result = evaluateProof(d, await look(d.name), targets);
      if (!result.ok) {
        if (lastReason.get(d.claim) !== result.reason)
          log.info({ name: d.name, reason: result.reason }, 'domain not proven yet');
        lastReason.set(d.claim, result.reason);
        const delay = Math.min((due?.delay ?? every / 2) * 2, maxBackoff);
        nextCheck.set(d.claim, { at: Date.now() + delay, delay });
        continue;
      }
      try {
        o.store.author(o.key, 'dns.verified', { claim: d.claim, name: d.name, method: result.method });
        lastReason.delete(d.claim);
        nextCheck.delete(d.claim);
        nextRecheck.set(d.claim, Date.now() + recheckEvery);
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
  // A new claim is checked at once, not at the next tick.
  const stopFollowing = followState(o.store, () => void verifyNow(), {
    everyMs: every,
    wants: (op) => op.kind === 'dns.claim',
  });
  return {
    responder,
    verifyNow,
    async close() {
      stopFollowing();
      await running;
      await responder.close();
    },
  };
}

/** `text` as a lapse reason: printable ASCII only (it came from someone's DNS), at most 256 characters. */
export function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return (clean.length > 256 ? `${clean.slice(0, 253)}...` : clean) || 'proof missing';
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
    ratePerSecond: ctx.config.publicDnsRate,
    recheckEveryMs: ctx.config.domainRecheckMs,
    graceMs: ctx.config.domainGraceMs,
    graceFile: join(nodePaths(ctx.config.dataDir).dir, 'domain-proofs.json'),
    logger: ctx.logger,
  });
  ctx.onClose(() => dns.close());
  const at = dns.responder.address();
  return `running on udp+tcp ${at.address}:${at.port}, ${ctx.config.publicDnsRate}/s per source network, proofs via ${ctx.config.publicResolver ?? 'the host resolvers'}`;
}
