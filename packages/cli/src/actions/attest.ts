// Types only at load time: @formation/attest (Fastify, guest files) loads when an attest command runs.
import type { MeasurementInputs, ReplicaResult, ReplicaTarget } from '@formation/attest';
import type { KeyPair } from '@formation/identity';
import { DEFAULT_PORTS, FormError, type FormpackManifest } from '@formation/interface';
import type { InstanceView } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { resolveInstance } from './manage.ts';
import { localBuilder } from './pack-build.ts';

interface AttestOptions {
  json?: boolean;
  node?: string;
}

/** What `form attest` and `form secret put` work from: the instance, its expected measurement, its replicas. */
export interface AttestPlan {
  instance: InstanceView;
  expected: MeasurementInputs;
  expectedDigest: string;
  /** Where the expected values came from: this machine's own build, or the node's copy of the manifest. */
  expectedFrom: 'local build' | 'node manifest';
  targets: ReplicaTarget[];
}

export async function planAttestation(ref: string, key: KeyPair, node?: string): Promise<AttestPlan> {
  const { httpStateClient } = await import('@formation/state/client');
  const state = httpStateClient(await serviceUrl('state', node));
  const instance = await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : key.address);
  let manifest: FormpackManifest | undefined;
  let expectedFrom: AttestPlan['expectedFrom'] = 'local build';
  try {
    manifest = (await localBuilder()).get(instance.formpackId) ?? undefined;
  } catch {
    manifest = undefined;
  }
  if (!manifest) {
    expectedFrom = 'node manifest';
    manifest = await new (await import('@formation/pack')).PackClient(await serviceUrl('pack', node)).get(
      instance.formpackId,
    );
  }
  const { expectedMeasurement } = await import('@formation/attest');
  const { vmNameFor } = await import('@formation/scheduler');
  const { inputs, digest } = expectedMeasurement(manifest, instance.resources);
  const nodes = await state.nodes();
  const vmUrl = await serviceUrl('vmm', node);
  const assigned = instance.replicaSet.filter((r) => r.assigned !== false);
  const targets = assigned.map((r) => {
    const n = nodes.find((x) => x.id === r.node);
    return {
      url: assigned.length === 1 || !n ? vmUrl : nodeVmmUrl(n.endpoint, vmUrl),
      nodePublicKey: r.node,
      vm: vmNameFor(instance),
    };
  });
  if (targets.length === 0) {
    throw new FormError('ATTEST_FAILED', `Cannot attest ${instance.name}: it has no replica placed on a node yet`, {
      hint: 'Wait until `form manage get status` shows it running.',
    });
  }
  return { instance, expected: inputs, expectedDigest: digest, expectedFrom, targets };
}

/** A node's VMM API from its registered p2p endpoint (host:port, every port shifted by the same offset). */
function nodeVmmUrl(endpoint: string, fallback: string): string {
  const m = /^(.*):(\d+)$/.exec(endpoint);
  if (!m) return fallback;
  const host = m[1] === '0.0.0.0' || m[1] === '' ? '127.0.0.1' : (m[1] as string);
  const offset = Number(m[2]) - DEFAULT_PORTS.p2p;
  return `http://${host.includes(':') ? `[${host}]` : host}:${DEFAULT_PORTS.vmm + offset}`;
}

export async function attestAll(plan: AttestPlan, key: KeyPair): Promise<ReplicaResult[]> {
  const { attestReplica } = await import('@formation/attest');
  return Promise.all(plan.targets.map((t) => attestReplica(key, t, plan.expected)));
}

export async function attest(ref: string, opts: AttestOptions): Promise<number> {
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node);
  const results = await attestAll(plan, key);
  const { providers } = await import('@formation/attest');
  const ok = results.every((r) => r.verdict.ok);
  const used = new Set(results.map((r) => r.report?.report.provider ?? 'software'));
  const provs = providers().filter((p) => used.has(p.name));
  if (opts.json) {
    printJson({
      instance: plan.instance.id,
      name: plan.instance.name,
      ok,
      expected: { digest: plan.expectedDigest, inputs: plan.expected, from: plan.expectedFrom },
      replicas: results.map((r) => ({
        node: r.target.nodePublicKey,
        vm: r.target.vm,
        ok: r.verdict.ok,
        reason: r.verdict.reason,
        checks: r.verdict.checks,
        guestKey: r.report?.report.guestKey ?? null,
        ms: Math.round(r.ms),
      })),
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
  out.push(`expected measurement sha256:${plan.expectedDigest}  (from the ${plan.expectedFrom})`);
  if (plan.expectedFrom === 'node manifest') {
    out.push(pc.yellow('  note: no local build of this Formpack here; the expected values come from the node'));
  }
  for (const r of results) {
    const head = r.verdict.ok ? pc.green('PASS') : pc.red('FAIL');
    out.push(
      `${head} replica ${r.target.vm} on node ${r.target.nodePublicKey.slice(0, 18)}…  (${Math.round(r.ms)} ms)`,
    );
    for (const c of r.verdict.checks)
      out.push(`  ${c.ok ? pc.green('✓') : pc.red('✗')} ${c.name.padEnd(22)} ${c.detail}`);
  }
  for (const p of provs) {
    out.push(`provider ${pc.bold(p.name)}: ${p.trust}`);
    out.push(`  protects against: ${p.protects.join('; ')}`);
    out.push(`  does NOT protect against: ${p.doesNotProtect.join('; ')}`);
  }
  out.push(
    ok
      ? pc.green(`attested: ${results.length}/${results.length} replicas match the Formpack`)
      : pc.red(`NOT attested: ${results.filter((r) => !r.verdict.ok).length}/${results.length} replicas failed`),
  );
  process.stdout.write(`${out.join('\n')}\n`);
  return ok ? 0 : 1;
}
