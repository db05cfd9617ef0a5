import { FormError } from '@formation/interface';
import type { InstanceView, StateClient } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceClient, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { replicaCount } from '../replica-count.ts';
import { inert } from './inert.ts';

interface Common {
  node?: string;
  json?: boolean;
}

interface StatusOptions extends Common {
  attest?: boolean;
}

/** How long a node may go without a heartbeat before placement counts it out (ms), as on the nodes. */
const nodeTimeoutMs = (): number => Number(process.env.FORM_NODE_TIMEOUT_MS) || 30_000;

export async function client(opts: Common): Promise<StateClient> {
  const url = await serviceUrl('state', opts.node);
  const { httpStateClient } = await import('@formation/state/client');
  return httpStateClient(url);
}

/** Find an instance by id, or by name among the caller's instances. */
export async function resolveInstance(state: StateClient, ref: string, owner?: string): Promise<InstanceView> {
  if (/^[0-9a-f]{32}$/.test(ref)) {
    const inst = await state.instance(ref);
    if (inst) return inst;
  }
  const all = await state.instances();
  const matches = all.filter(
    (i) => !i.deleted && (i.id.startsWith(ref) || i.name === ref) && (!owner || i.ownerAddress === owner),
  );
  if (matches.length === 1) return matches[0] as InstanceView;
  if (matches.length > 1) {
    throw new FormError('CLI_USAGE', `Cannot tell which instance "${ref}" means: ${matches.length} match`, {
      hint: `Use the id: ${matches.map((m) => m.id).join(', ')}`,
    });
  }
  throw new FormError('INSTANCE_NOT_FOUND', `Cannot find instance "${ref}"`, {
    hint: 'List yours with `form manage list`.',
  });
}

async function myAddress(): Promise<string | undefined> {
  try {
    return (await developerKey()).address;
  } catch {
    return undefined;
  }
}

/** Per replica node: `ok` / `FAILED (reason)` and the data disk lock, from a fresh attestation. */
async function attestReplicas(
  inst: InstanceView,
  node: string | undefined,
): Promise<Map<string, { attested: string; ok: boolean; disk: string }>> {
  const { attestAll, planAttestation } = await import('./attest.ts');
  const { attestationSummary, diskStatus } = await import('@formation/attest');
  const key = await developerKey();
  const plan = await planAttestation(inst.id, key, node);
  const results = await attestAll(plan, key);
  const out = new Map<string, { attested: string; ok: boolean; disk: string }>();
  await Promise.all(
    results.map(async (r) => {
      const d = await diskStatus(key, r.target);
      out.set(r.target.nodePublicKey, {
        attested: attestationSummary(r),
        ok: r.verdict.ok,
        disk: d.state === 'unknown' ? `unknown (${d.error ?? ''})` : d.state,
      });
    }),
  );
  return out;
}

/** `form manage get <what> <instance>`: `status` or `metrics`. */
export async function get(what: string, ref: string, opts: StatusOptions & { replica?: string }): Promise<number> {
  if (what === 'metrics') return (await import('./metrics.ts')).metrics(ref, opts);
  if (what !== 'status')
    throw new FormError('CLI_USAGE', `Cannot get "${what}": give \`status\` or \`metrics\``, {
      hint: 'e.g. `form manage get metrics hello-server`',
    });
  return getStatus(ref, opts);
}

/**
 * The instances `form manage get status <ref>` reports on: one by id or name, or — as seed 000 writes
 * it, `form manage get status <formpack-id>` — every live instance of that Formpack (yours when you
 * have a key).
 */
export async function statusTargets(state: StateClient, ref: string, me: string | undefined): Promise<InstanceView[]> {
  if (/^[0-9a-f]{64}$/.test(ref)) {
    const all = (await state.instances()).filter((i) => !i.deleted && i.formpackId === ref);
    const mine = me ? all.filter((i) => i.ownerAddress === me) : all;
    if (mine.length === 0) {
      throw new FormError('INSTANCE_NOT_FOUND', `Cannot find an instance of Formpack ${ref.slice(0, 12)}…`, {
        hint: all.length
          ? 'Instances of it exist, but none is yours.'
          : 'Ship it with `form pack ship`, then ask again (placement can take a minute).',
      });
    }
    return mine;
  }
  return [await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : me)];
}

async function getStatus(ref: string, opts: StatusOptions): Promise<number> {
  const state = await client(opts);
  const targets = await statusTargets(state, ref, await myAddress());
  const nodes = await state.nodes();
  const dns = await state.dns();
  const results: Array<{ json: Record<string, unknown>; failed: boolean }> = [];
  for (const inst of targets) results.push(await statusOf(inst, nodes, dns, opts));
  if (opts.json) printJson(results.length === 1 ? results[0]?.json : results.map((r) => r.json));
  return results.some((r) => r.failed) ? 1 : 0;
}

async function statusOf(
  inst: InstanceView,
  nodes: Awaited<ReturnType<StateClient['nodes']>>,
  dns: Awaited<ReturnType<StateClient['dns']>>,
  opts: StatusOptions,
): Promise<{ json: Record<string, unknown>; failed: boolean }> {
  const { deploymentStatus, formatDeploymentStatus, placementNodesFrom } = await import('@formation/scheduler');
  const s = deploymentStatus(inst, placementNodesFrom(nodes, Date.now(), nodeTimeoutMs()));
  const names = dns.filter((d) => d.instanceId === inst.id).map((d) => d.name);
  // Prefer <name>.<domain> (what people type) over <name>.<owner address>.<domain> (when another owner
  // also uses the name) over <instance id>.<domain>.
  const domain =
    names.filter((n) => n.startsWith(`${inst.name}.`)).sort((a, b) => a.length - b.length)[0] ?? names[0] ?? null;
  const attested = opts.attest ? await attestReplicas(inst, opts.node) : undefined;
  const replicas = inst.replicaSet.map((r) => ({
    node: nodes.find((n) => n.id === r.node)?.address ?? r.node,
    state: r.state ?? 'claimed',
    formnetIp: r.formnetIp,
    dnsName: domain,
    revision: r.revision,
    reason: r.reason,
    release: r.release ?? null,
    health: r.health ? { status: r.health.status, release: r.health.release, reason: r.health.reason } : null,
    ...(attested
      ? {
          attested: attested.get(r.node)?.attested ?? 'not attested (no replica placed)',
          disk: attested.get(r.node)?.disk ?? 'unknown',
        }
      : {}),
  }));
  const attestFailed = attested ? [...attested.values()].some((a) => !a.ok) : false;
  const json = {
    id: inst.id,
    name: inst.name,
    status: s.status,
    ...(s.reason ? { reason: s.reason } : {}),
    running: s.running,
    wanted: s.wanted,
    formpackId: inst.formpackId,
    revision: inst.revision,
    release: inst.release ?? 1,
    dnsName: domain,
    /** Scale to zero: minutes idle before a replica is suspended (0 = off; Formfile AUTOSTOP or form manage autostop). */
    autostopMinutes: inst.autostopMinutes ?? 0,
    replicas,
  };
  if (!opts.json) {
    const colour = s.status === 'SUCCESS' ? pc.green : s.status === 'FAILURE' ? pc.red : pc.yellow;
    process.stdout.write(`${colour(inert(formatDeploymentStatus(s)))}\n`);
    process.stdout.write(
      `instance ${inst.name} (${inst.id}), ${s.running}/${s.wanted} replicas running, revision ${inst.revision}\n`,
    );
    if (domain) process.stdout.write(`name     ${domain}\n`);
    if (json.autostopMinutes > 0)
      process.stdout.write(
        `autostop after ${json.autostopMinutes} min idle (suspended replicas wake on a connection)\n`,
      );
    for (const r of replicas) {
      const att =
        r.attested === undefined
          ? ''
          : `  attested: ${r.attested === 'ok' ? pc.green('ok') : pc.red(r.attested)}  disk: ${r.disk}`;
      const health = r.health ? `${r.health.status}${r.health.reason ? ` (${r.health.reason})` : ''}` : '-';
      process.stdout.write(
        `  ${r.node}  ${inert(String(r.state)).padEnd(9)} ${(r.formnetIp ?? '-').padEnd(15)} rel ${r.release ?? '-'} rev ${r.revision ?? '-'}  health ${inert(health)}${r.reason ? `  ${inert(r.reason)}` : ''}${att}\n`,
      );
    }
  }
  return { json, failed: attestFailed };
}

export interface EventRow {
  at: number;
  kind: string;
  node: string | null;
  author: string | null;
  actor: string | null;
  op: string | null;
  detail: string;
}

/** One event as a line of text; what nodes wrote (reasons, names) is made inert for the terminal. */
export function formatEvent(
  e: EventRow,
  label: (node: string | null) => string,
  c: Pick<typeof pc, 'red' | 'yellow' | 'dim'> = pc,
): string {
  const colour =
    e.kind === 'failed' || e.kind === 'node-lost' ? c.red : e.kind === 'healed' ? c.yellow : (x: string) => x;
  const by = e.actor ? c.dim(`  (by ${e.actor})`) : '';
  return `${new Date(e.at).toISOString()}  ${colour(e.kind.padEnd(15))} ${inert(label(e.node)).padEnd(16)} ${inert(e.detail)}${by}\n`;
}

/** `form manage events <instance> [--since 10m] [--json]`: the instance's history, oldest first. */
export async function events(ref: string, opts: Common & { since?: string }): Promise<number> {
  const api = await serviceClient('state', opts.node === undefined ? {} : { node: opts.node });
  const q = opts.since ? `?since=${encodeURIComponent(opts.since)}` : '';
  const r = await api.request<{ instance: { id: string; name: string }; events: EventRow[] }>(
    'GET',
    `/instances/${encodeURIComponent(ref)}/events${q}`,
  );
  const nodes = await (await client(opts)).nodes();
  const label = (pk: string | null): string => {
    if (!pk) return '-';
    const n = nodes.find((x) => x.id === pk);
    return n?.name ?? `${pk.slice(0, 10)}…`;
  };
  if (opts.json) {
    printJson({
      instance: r.instance,
      events: r.events.map((e) => ({
        ...e,
        time: new Date(e.at).toISOString(),
        nodeName: e.node ? label(e.node) : null,
      })),
    });
    return 0;
  }
  process.stdout.write(`events of ${r.instance.name} (${r.instance.id})\n`);
  if (r.events.length === 0) process.stdout.write('  (none in this period)\n');
  for (const e of r.events) process.stdout.write(formatEvent(e, label));
  return 0;
}

export async function list(opts: Common & { all?: boolean }): Promise<number> {
  const state = await client(opts);
  const me = opts.all ? undefined : await myAddress();
  if (!opts.all && !me) {
    throw new FormError('KEY_NOT_FOUND', 'Cannot list your instances: no developer key', {
      hint: 'Run `form kit init`, or pass --all.',
    });
  }
  const nodes = await state.nodes();
  const { deploymentStatus, placementNodesFrom } = await import('@formation/scheduler');
  const rows = (await state.instances())
    .filter((i) => !i.deleted && (!me || i.ownerAddress === me))
    .map((i) => {
      const s = deploymentStatus(i, placementNodesFrom(nodes, Date.now(), nodeTimeoutMs()));
      return {
        id: i.id,
        name: i.name,
        status: s.status,
        reason: s.reason ?? null,
        replicas: `${s.running}/${s.wanted}`,
        ips: i.replicaSet.map((r) => r.formnetIp).filter(Boolean),
      };
    });
  if (opts.json) printJson(rows);
  else if (rows.length === 0) process.stdout.write('No instances. Ship one with `form pack ship <dir>`.\n');
  else
    for (const r of rows)
      process.stdout.write(`${r.id}  ${r.name.padEnd(20)} ${r.status.padEnd(8)} ${r.replicas}  ${r.ips.join(', ')}\n`);
  return 0;
}

/** The instance, checked to be the caller's: another key gets a clear refusal before anything is sent. */
export async function ownInstance(state: StateClient, ref: string, verb: string) {
  const key = await developerKey();
  const inst = await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : key.address);
  if (inst.ownerAddress !== key.address) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot ${verb} instance ${inst.name}: it belongs to ${inst.ownerAddress}, you are ${key.address}`,
      { hint: 'Only the key that shipped an instance may change it.' },
    );
  }
  return { key, inst };
}

export async function setDesired(ref: string, desired: 'running' | 'stopped', opts: Common): Promise<number> {
  const state = await client(opts);
  const verb = desired === 'running' ? 'start' : 'stop';
  const { key, inst } = await ownInstance(state, ref, verb);
  // A start also wakes replicas suspended by autostop (scale to zero) instead of waiting for a connection.
  await state.author(key, 'instance.update', {
    instanceId: inst.id,
    desired,
    ...(desired === 'running' ? { wakeAt: Date.now() } : {}),
  });
  if (opts.json) printJson({ ok: true, id: inst.id, desired });
  else
    process.stdout.write(
      `Asked to ${verb} ${inst.name} (${inst.id}); follow it with \`form manage get status ${inst.name}\`.\n`,
    );
  return 0;
}

export async function scale(ref: string, count: string, opts: Common): Promise<number> {
  const replicas = replicaCount(count, `scale to ${count} replicas`);
  const state = await client(opts);
  const { key, inst } = await ownInstance(state, ref, 'scale');
  if (inst.replicas !== replicas) await state.author(key, 'instance.update', { instanceId: inst.id, replicas });
  if (opts.json) printJson({ ok: true, id: inst.id, replicas, changed: inst.replicas !== replicas });
  else if (inst.replicas === replicas) process.stdout.write(`${inst.name} already has ${replicas} replica(s).\n`);
  else
    process.stdout.write(
      `Asked for ${replicas} replica(s) of ${inst.name} (was ${inst.replicas}); follow it with \`form manage get status ${inst.name}\`.\n`,
    );
  return 0;
}

export async function remove(ref: string, opts: Common): Promise<number> {
  const state = await client(opts);
  const { key, inst } = await ownInstance(state, ref, 'delete');
  await state.author(key, 'instance.delete', { instanceId: inst.id });
  if (opts.json) printJson({ ok: true, id: inst.id, deleted: true });
  else process.stdout.write(`Deleted instance ${inst.name} (${inst.id}); its VMs are being removed.\n`);
  return 0;
}
