// Proof that an owner controls a custom domain (issue 19): the probe asks a resolver (the node's
// `publicResolver`, or the host's) for `_formation.<domain>` TXT and `<domain>` CNAME; the evaluation
// is pure. A node records a `dns.verified` op only when the evaluation says so.
import { Resolver } from 'node:dns/promises';

/** What the public DNS said about a claimed domain. `error` notes a lookup that failed outright. */
export interface DomainLookup {
  txt: string[];
  cname: string[];
  errors: string[];
}

export interface ClaimToCheck {
  name: string;
  token: string;
}

export type ProofResult = { ok: true; method: 'txt' | 'cname' } | { ok: false; reason: string };

/** The record an owner must publish to prove `claim`, for messages. */
export function proofRecord(claim: ClaimToCheck, targets: readonly string[]): string {
  const cname = targets[0] ? ` (or a CNAME ${claim.name} → ${targets[0]})` : '';
  return `TXT _formation.${claim.name} "${claim.token}"${cname}`;
}

/**
 * Does `lookup` prove `claim`? A TXT string equal to the token (whole, case-sensitive), or a CNAME
 * to one of `targets` (the instance's names in the network domain). Pure.
 *
 * @example evaluateProof({ name: 'shop.example.com', token }, { txt: [token], cname: [], errors: [] }, [])
 * // { ok: true, method: 'txt' }
 */
export function evaluateProof(claim: ClaimToCheck, lookup: DomainLookup, targets: readonly string[]): ProofResult {
  if (lookup.txt.some((t) => t.trim() === claim.token)) return { ok: true, method: 'txt' };
  const norm = (n: string) => n.toLowerCase().replace(/\.$/, '');
  const want = new Set(targets.map(norm));
  if (lookup.cname.some((c) => want.has(norm(c)))) return { ok: true, method: 'cname' };
  const saw = [
    lookup.txt.length ? `TXT ${lookup.txt.map((t) => JSON.stringify(t)).join(', ')}` : 'no TXT',
    lookup.cname.length ? `CNAME ${lookup.cname.join(', ')}` : 'no CNAME',
    ...lookup.errors,
  ].join('; ');
  return { ok: false, reason: `the resolver shows ${saw}; expected ${proofRecord(claim, targets)}` };
}

/**
 * Ask `resolver` (`host:port`; unset = the host's resolvers) what the internet says about `name`.
 * NXDOMAIN / no data are empty lists; other failures are noted in `errors`.
 */
export async function lookupDomain(name: string, resolver?: string, timeoutMs = 3000): Promise<DomainLookup> {
  const r = new Resolver({ timeout: timeoutMs, tries: 2 });
  if (resolver) r.setServers([resolver]);
  const errors: string[] = [];
  const quiet = async <T>(what: string, p: Promise<T[]>): Promise<T[]> => {
    try {
      return await p;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (code !== 'ENOTFOUND' && code !== 'ENODATA') errors.push(`${what}: ${code || (err as Error).message}`);
      return [];
    }
  };
  const [txt, cname] = await Promise.all([
    quiet('TXT', r.resolveTxt(`_formation.${name}`)).then((rows) => rows.map((chunks) => chunks.join(''))),
    quiet('CNAME', r.resolveCname(name)),
  ]);
  return { txt, cname, errors };
}
