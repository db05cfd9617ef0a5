import type { KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { DomainView, StateClient } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { inert } from './inert.ts';
import { resolveInstance } from './manage.ts';

// `form dns add|verify|list|rm`: custom domains for instances (issue 19). The pure-ish cores take a
// StateClient and a key, so tests run them against a real in-process store.

interface Common {
  node?: string;
  json?: boolean;
}

const FQDN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `domain` lower-cased without its trailing dot, or CLI_USAGE saying why it is not a domain name. */
export function normalizeDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/\.$/, '');
  if (!FQDN.test(d)) {
    throw new FormError('CLI_USAGE', `Cannot use ${JSON.stringify(domain)}: not a domain name`, {
      hint: 'Give a full name with at least one dot, letters, digits and hyphens only, e.g. shop.example.com.',
    });
  }
  return d;
}

/** The names in the network domain a CNAME may point at for `instanceId` (shortest first). */
async function cnameTargets(state: StateClient, instanceId: string): Promise<string[]> {
  const recs = await state.dns();
  return recs
    .filter((r) => r.instanceId === instanceId && r.source === 'instance')
    .map((r) => r.name)
    .sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
}

const proof = (d: Pick<DomainView, 'name' | 'token'>, targets: string[]) =>
  `TXT _formation.${d.name} "${d.token}"${targets[0] ? `  (or: CNAME ${d.name} → ${targets[0]})` : ''}`;

async function mine(state: StateClient, key: KeyPair, name: string): Promise<DomainView | undefined> {
  return (await state.domains()).find((d) => d.name === name && d.owner === key.publicKey);
}

export interface AddResult {
  name: string;
  instanceId: string;
  token: string;
  state: DomainView['state'];
  /** The record to publish. */
  proof: string;
  /** False when an existing claim of yours for this instance was kept (its token unchanged). */
  created: boolean;
}

/** Claim `domain` for the caller's instance `ref` (a dns.claim; its token is bound to the caller). */
export async function addDomain(state: StateClient, key: KeyPair, ref: string, domain: string): Promise<AddResult> {
  const name = normalizeDomain(domain);
  const inst = await resolveInstance(state, ref, key.address);
  if (inst.owner !== key.publicKey) {
    throw new FormError('AUTH_FORBIDDEN', `Cannot add ${name} to ${ref}: the instance is not yours`);
  }
  const targets = await cnameTargets(state, inst.id);
  const have = await mine(state, key, name);
  if (have && have.instanceId === inst.id) {
    return {
      name,
      instanceId: inst.id,
      token: have.token,
      state: have.state,
      proof: proof(have, targets),
      created: false,
    };
  }
  // The client fills the token: domainTokenOf(owner, name, ts), bound to this account.
  const op = await state.author(key, 'dns.claim', { name, instanceId: inst.id });
  const token = String(op.body.token);
  return { name, instanceId: inst.id, token, state: 'pending', proof: proof({ name, token }, targets), created: true };
}

/**
 * Wait until the nodes have verified the caller's claim on `domain` (they check pending claims every few
 * seconds through their resolver). TIMEOUT with the record to publish when they have not by `timeoutMs`.
 */
export async function waitVerified(
  state: StateClient,
  key: KeyPair,
  domain: string,
  timeoutMs: number,
  pollMs = 1000,
): Promise<DomainView> {
  const name = normalizeDomain(domain);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await mine(state, key, name);
    if (!d) {
      throw new FormError('NOT_FOUND', `Cannot verify ${name}: you have no claim on it`, {
        hint: `Claim it first: form dns add <instance> ${name}`,
      });
    }
    if (d.state === 'verified') return d;
    if (d.state === 'contested') {
      throw new FormError('CONFLICT', `Cannot use ${name}: another owner's claim on it is verified too`, {
        hint: 'A contested domain routes for nobody; one of the owners must `form dns rm` it.',
      });
    }
    if (Date.now() >= deadline) {
      const targets = await cnameTargets(state, d.instanceId);
      throw new FormError(
        'TIMEOUT',
        d.state === 'lapsed'
          ? `Cannot verify ${name}: it lapsed (${inert(d.lapsedBy[0]?.reason ?? 'the proof is gone')}) and the nodes did not see the proof again within ${Math.round(timeoutMs / 1000)} s`
          : `Cannot verify ${name}: the nodes did not see the proof within ${Math.round(timeoutMs / 1000)} s (${d.verifiedBy.length} node(s) vouched so far)`,
        { hint: `Publish ${proof(d, targets)} at your DNS provider, wait for it to propagate, and run this again.` },
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Release the caller's claim on `domain` (a dns.release): the ingress and public DNS drop it. */
export async function removeDomain(state: StateClient, key: KeyPair, domain: string): Promise<string> {
  const name = normalizeDomain(domain);
  if (!(await mine(state, key, name))) {
    throw new FormError('NOT_FOUND', `Cannot remove ${name}: you have no claim on it`, {
      hint: 'See yours with `form dns list`.',
    });
  }
  await state.author(key, 'dns.release', { name });
  return name;
}

async function context(opts: Common): Promise<{ state: StateClient; key: KeyPair }> {
  const url = await serviceUrl('state', opts.node);
  const { httpStateClient } = await import('@formation/state/client');
  return { state: httpStateClient(url), key: await developerKey() };
}

export async function dnsAdd(ref: string, domain: string, opts: Common): Promise<number> {
  const { state, key } = await context(opts);
  const r = await addDomain(state, key, ref, domain);
  if (opts.json) printJson(r);
  else {
    process.stdout.write(`${r.created ? 'Claimed' : 'Already claimed'} ${r.name} for ${ref} (${r.state}).\n`);
    if (r.state !== 'verified') {
      process.stdout.write(`Prove you control it: publish\n  ${r.proof}\nthen run: form dns verify ${r.name}\n`);
    }
  }
  return 0;
}

export async function dnsVerify(domain: string, opts: Common & { timeout?: string }): Promise<number> {
  const { state, key } = await context(opts);
  const seconds = opts.timeout === undefined ? 120 : Number(opts.timeout);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new FormError('CLI_USAGE', `Cannot use --timeout ${opts.timeout}: give seconds (a number ≥ 0)`);
  }
  const d = await waitVerified(state, key, domain, seconds * 1000);
  if (opts.json) printJson(d);
  else {
    process.stdout.write(
      `${pc.green('VERIFIED')} ${d.name} → instance ${d.instanceId} (by ${d.verifiedBy.length} node(s): ${d.verifiedBy.map((v) => v.method).join(', ')})\n`,
    );
  }
  return 0;
}

export async function dnsList(opts: Common): Promise<number> {
  const { state, key } = await context(opts);
  const [domains, instances] = await Promise.all([state.domains(), state.instances()]);
  const rows = domains.filter((d) => d.owner === key.publicKey);
  if (opts.json) {
    printJson(rows);
    return 0;
  }
  if (rows.length === 0) {
    process.stdout.write('No custom domains. Add one with `form dns add <instance> <domain>`.\n');
    return 0;
  }
  process.stdout.write(domainLines(rows, instances).join('\n') + '\n');
  return 0;
}

/**
 * The lines of `form dns list` for the caller's `rows`: name, instance, state, vouching nodes; a lapsed
 * domain also says since when, why (the nodes' own words, made inert) and what to publish again.
 */
export function domainLines(
  rows: readonly DomainView[],
  instances: ReadonlyArray<{ id: string; name: string }>,
  color: Pick<typeof pc, 'green' | 'red' | 'yellow'> = pc,
): string[] {
  const nameOf = new Map(instances.map((i) => [i.id, i.name]));
  const lines: string[] = [];
  for (const d of rows) {
    const st =
      d.state === 'verified'
        ? color.green(d.state)
        : d.state === 'contested' || d.state === 'lapsed'
          ? color.red(d.state)
          : d.state;
    lines.push(
      `${inert(d.name)}  ${inert(nameOf.get(d.instanceId) ?? d.instanceId)}  ${st}  ${d.verifiedBy.length} node(s)`,
    );
    const lapsed = d.lapsedBy ?? [];
    if (d.state === 'lapsed' && lapsed.length > 0) {
      const since = new Date(Math.min(...lapsed.map((x) => x.ts))).toISOString();
      lines.push(`  not served since ${since}: ${lapsed.length} node(s) no longer see the proof`);
      for (const reason of new Set(lapsed.map((x) => x.reason))) lines.push(`  why: ${inert(reason)}`);
      lines.push(`  fix: publish ${inert(proof(d, []))} again; the nodes re-check and serve it once they see it`);
    }
  }
  return lines;
}

export async function dnsRm(domain: string, opts: Common): Promise<number> {
  const { state, key } = await context(opts);
  const name = await removeDomain(state, key, domain);
  if (opts.json) printJson({ name, removed: true });
  else process.stdout.write(`Released ${name}: the ingress and public DNS no longer serve it.\n`);
  return 0;
}
