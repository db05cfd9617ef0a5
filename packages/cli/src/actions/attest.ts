// Types only at load time: @formation/attest (Fastify, guest files) loads when an attest command runs.
import type { ExpectedSource, MeasurementInputs, ReplicaResult, ReplicaTarget } from '@formation/attest';
import type { KeyPair } from '@formation/identity';
import { FormError, type FormpackManifest } from '@formation/interface';
import type { InstanceView } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { replicaNodeUrl } from '../replica-nodes.ts';
import { resolveInstance } from './manage.ts';
import { localBuilder } from './pack-build.ts';

interface AttestOptions {
  json?: boolean;
  node?: string;
  measurement?: string;
  trustNodeMeasurement?: boolean;
  https?: string;
  resolve?: string;
  cacert?: string;
}

/** What `form attest` and `form secret put` work from: the instance, its expected measurement, its replicas. */
export interface AttestPlan {
  instance: InstanceView;
  expected: MeasurementInputs;
  expectedDigest: string;
  /** Where the expected values came from (this machine's build, a pin, or the node) and what a pass is worth. */
  source: ExpectedSource;
  targets: ReplicaTarget[];
}

export interface PlanOptions {
  /** `verify` (form attest, status) or `secret`: a secret or the disk key follows a pass (never on the node's word). */
  use?: 'verify' | 'secret';
  /** What would be sent, for the refusal message (`secret DB_PASSWORD`, `the disk key`). */
  sending?: string;
  /** `--measurement <hex>`: the developer's own expected digest. */
  measurement?: string | undefined;
  /** `--trust-node-measurement` (form attest only). */
  trustNode?: boolean | undefined;
  /**
   * Only the instance's owner may go on (e.g. `unlock the disk of`): checked first, before anything
   * is fetched or made, so another key learns nothing and gets the reason that matters.
   */
  ownerOnly?: string;
}

/**
 * Resolve the instance and its expected measurement: from this machine's build of its Formpack, else
 * from the node's manifest, which counts only when it yields the digest the developer pinned (or, for
 * `form attest`, when they said --trust-node-measurement). For `use: 'secret'` an expectation that
 * comes from the node alone is refused here, before any replica is contacted.
 */
export async function planAttestation(
  ref: string,
  key: KeyPair,
  node?: string,
  opts: PlanOptions = {},
): Promise<AttestPlan> {
  const { httpStateClient } = await import('@formation/state/client');
  const state = httpStateClient(await serviceUrl('state', node));
  const instance = await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : key.address);
  if (opts.ownerOnly && instance.ownerAddress !== key.address) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot ${opts.ownerOnly} instance ${instance.name}: it belongs to ${instance.ownerAddress}, you are ${key.address}`,
      { hint: 'Only the key that shipped an instance holds (and makes) its disk key.' },
    );
  }
  let manifest: FormpackManifest | undefined;
  let from: 'local build' | 'node manifest' = 'local build';
  try {
    manifest = (await localBuilder()).get(instance.formpackId) ?? undefined;
  } catch {
    manifest = undefined;
  }
  const { expectedMeasurement, expectedMeasurementSource, parsePinnedMeasurement } = await import('@formation/attest');
  if (opts.measurement !== undefined) parsePinnedMeasurement(opts.measurement); // a typo fails before the network
  if (!manifest) {
    from = 'node manifest';
    manifest = await new (await import('@formation/pack')).PackClient(await serviceUrl('pack', node), key).get(
      instance.formpackId,
    );
  }
  const { inputs, digest } = expectedMeasurement(manifest, instance.resources);
  const source = expectedMeasurementSource({
    manifest: from,
    digests: [expectedMeasurement(manifest).digest, digest],
    pinned: opts.measurement,
    trustNode: opts.trustNode,
    use: opts.use ?? 'verify',
    instance: instance.name,
    formpackId: instance.formpackId,
    sending: opts.sending,
  });
  const { vmNameFor } = await import('@formation/scheduler');
  const nodes = await state.nodes();
  const vmUrl = await serviceUrl('vmm', node);
  const assigned = instance.replicaSet.filter((r) => r.assigned !== false);
  const targets = assigned.map((r) => {
    const n = nodes.find((x) => x.id === r.node);
    return {
      url: assigned.length === 1 || !n ? vmUrl : (replicaNodeUrl(n.endpoint, 'vmm', vmUrl) ?? vmUrl),
      nodePublicKey: r.node,
      vm: vmNameFor(instance),
    };
  });
  if (targets.length === 0) {
    throw new FormError('ATTEST_FAILED', `Cannot attest ${instance.name}: it has no replica placed on a node yet`, {
      hint: 'Wait until `form manage get status` shows it running.',
    });
  }
  return { instance, expected: inputs, expectedDigest: digest, source, targets };
}

export async function attestAll(plan: AttestPlan, key: KeyPair): Promise<ReplicaResult[]> {
  const { attestReplica } = await import('@formation/attest');
  return Promise.all(plan.targets.map((t) => attestReplica(key, t, plan.expected)));
}

export async function attest(ref: string, opts: AttestOptions): Promise<number> {
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node, {
    use: 'verify',
    measurement: opts.measurement,
    trustNode: opts.trustNodeMeasurement,
  });
  const results = await attestAll(plan, key);
  const { pinMeasurementHint, providers } = await import('@formation/attest');
  const passed = results.every((r) => r.verdict.ok);
  const https = opts.https
    ? await checkHttps(opts.https, results, {
        ...opts,
        // The owner's publish says TLS ends at the ingress (HTTPS <port> TERMINATE=ingress).
        ingressTls: Boolean(plan.instance.formpack?.service?.ingressTls),
      })
    : undefined;
  // Replicas matching a measurement the node itself supplied prove nothing: not attested, unless told to trust it.
  const ok = passed && plan.source.counts && (https?.ok ?? true);
  const used = new Set(results.map((r) => r.report?.report.provider ?? 'software'));
  const provs = providers().filter((p) => used.has(p.name));
  if (opts.json) {
    printJson({
      instance: plan.instance.id,
      name: plan.instance.name,
      ok,
      expected: {
        digest: plan.expectedDigest,
        inputs: plan.expected,
        from: plan.source.from,
        verified: plan.source.verified,
        note: plan.source.label,
      },
      replicas: results.map((r) => ({
        node: r.target.nodePublicKey,
        vm: r.target.vm,
        ok: r.verdict.ok,
        reason: r.verdict.reason,
        checks: r.verdict.checks,
        guestKey: r.report?.report.guestKey ?? null,
        tls: r.report?.report.tls ?? null,
        ms: Math.round(r.ms),
      })),
      ...(https ? { https } : {}),
      providers: provs.map((p) => ({
        name: p.name,
        trust: p.trust,
        protects: p.protects,
        doesNotProtect: p.doesNotProtect,
      })),
    });
    return ok ? 0 : 1;
  }
  const out: string[] = [];
  out.push(`instance ${pc.bold(plan.instance.name)} (${plan.instance.id})`);
  out.push(`expected measurement sha256:${plan.expectedDigest}  (${plan.source.label})`);
  if (!plan.source.verified) {
    out.push(
      pc.yellow(
        '  note: no local build of this Formpack here and no --measurement: the expected values come from the node being attested',
      ),
    );
  }
  for (const r of results) {
    const head = r.verdict.ok ? pc.green('PASS') : pc.red('FAIL');
    out.push(
      `${head} replica ${r.target.vm} on node ${r.target.nodePublicKey.slice(0, 18)}…  (${Math.round(r.ms)} ms)`,
    );
    for (const c of r.verdict.checks)
      out.push(`  ${c.ok ? pc.green('✓') : pc.red('✗')} ${c.name.padEnd(22)} ${c.detail}`);
  }
  if (https) {
    out.push(
      `${https.ok ? pc.green('PASS') : pc.red('FAIL')} https://${https.host}/: ${https.reason}` +
        (https.chain ? '' : pc.yellow(` (chain not verified: ${https.chainError})`)),
    );
  }
  for (const p of provs) {
    out.push(`provider ${pc.bold(p.name)}: ${p.trust}`);
    out.push(`  protects against: ${p.protects.join('; ')}`);
    out.push(`  does NOT protect against: ${p.doesNotProtect.join('; ')}`);
  }
  const failed = results.filter((r) => !r.verdict.ok).length;
  if (https && !https.ok && https.endsAt === 'ingress') {
    out.push(
      pc.red(`NOT attested end to end: TLS for ${https.host} ends at the ingress nodes, not in the attested guest`),
      '  the replicas above are attested; the HTTPS key is a node’s, and the nodes carrying a visit see it in clear',
    );
  } else if (https && !https.ok)
    out.push(pc.red(`NOT attested: the HTTPS key of ${https.host} is not an attested replica's`));
  else if (failed > 0) out.push(pc.red(`NOT attested: ${failed}/${results.length} replicas failed`));
  else if (!plan.source.counts) {
    out.push(
      pc.red(`NOT attested: ${results.length}/${results.length} replicas match a ${plan.source.label}`),
      `  ${pinMeasurementHint(plan.instance.formpackId)} Or accept the node's word with --trust-node-measurement.`,
    );
  } else if (!plan.source.verified) {
    out.push(
      pc.yellow(
        `attested against the node's word: ${results.length}/${results.length} replicas match (${plan.source.label})`,
      ),
    );
  } else out.push(pc.green(`attested: ${results.length}/${results.length} replicas match the Formpack`));
  process.stdout.write(`${out.join('\n')}\n`);
  return ok ? 0 : 1;
}

/**
 * `--https <host>`: the certificate served for `host` (through whatever node the name leads to) must
 * carry the key of a replica that passed attestation — each replica makes its own key, the ingress picks
 * one. The chain is checked by the TLS client (system CAs, or --cacert); a chain that does not verify
 * fails too. With `ingressTls` (the instance's Formfile says `HTTPS <port> TERMINATE=ingress`) a served
 * key that is no replica's is reported as what it is: TLS ends at the ingress (`endsAt: 'ingress'`),
 * never as the guest's; `ok` is false (the key is not an attested guest's). A served key that is an
 * attested replica's passes whatever the publish says (the proof wins over the declaration).
 */
export async function checkHttps(
  host: string,
  results: ReplicaResult[],
  opts: { resolve?: string | undefined; cacert?: string | undefined; ingressTls?: boolean },
): Promise<{
  host: string;
  ok: boolean;
  /** Where the visitor's TLS ends: in an attested guest, at the ingress nodes (TERMINATE=ingress), or unknown. */
  endsAt: 'guest' | 'ingress' | 'unknown';
  reason: string;
  spkiSha256: string | null;
  chain: boolean;
  chainError: string | null;
  replica: string | null;
}> {
  const { fetchServedCertificate, spkiSha256, verifyServedCertificate } = await import('@formation/attest');
  const { readFileSync } = await import('node:fs');
  const at = opts.resolve ? /^([0-9.]+|\[[0-9a-f:]+\])(?::(\d{1,5}))?$/i.exec(opts.resolve) : null;
  if (opts.resolve && !at) {
    throw new FormError('CLI_USAGE', `Cannot use --resolve ${opts.resolve}: give an IP address, optionally with :port`);
  }
  const served = await fetchServedCertificate(host, {
    address: at?.[1]?.replace(/^\[|\]$/g, ''),
    port: at?.[2] ? Number(at[2]) : undefined,
    ca: opts.cacert ? readFileSync(opts.cacert) : undefined,
  });
  const verdicts = results
    .filter((r) => r.verdict.ok && r.report)
    .map((r) => ({ vm: r.target.vm, v: verifyServedCertificate(r.report!.report, served.cert, host) }));
  const hit = verdicts.find((x) => x.v.ok);
  const spki = verdicts[0]?.v.spkiSha256 ?? null;
  const base = { host, spkiSha256: spki, chain: served.authorized, chainError: served.authorizationError };
  if (!hit && opts.ingressTls) {
    const servedSpki = spkiSha256(served.cert);
    const reason =
      `TLS for ${host} ends at the ingress nodes (Formfile HTTPS … TERMINATE=ingress): the served key ` +
      `sha256:${servedSpki.slice(0, 16)}… is a node's, not the attested guest's; the nodes see this traffic in clear`;
    return { ...base, spkiSha256: servedSpki, ok: false, endsAt: 'ingress', reason, replica: null };
  }
  if (!hit) {
    const reason = verdicts.length
      ? (verdicts[0]?.v.reason ?? '')
      : 'no replica passed attestation, so no key can be trusted';
    return { ...base, ok: false, endsAt: 'unknown', reason, replica: null };
  }
  return {
    ...base,
    endsAt: 'guest',
    ok: served.authorized,
    reason: `served key sha256:${hit.v.spkiSha256.slice(0, 16)}… is replica ${hit.vm}'s attested key`,
    replica: hit.vm,
  };
}
