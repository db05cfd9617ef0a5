import type { KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { ApiClient } from '@formation/service/client';
import type { InstanceView, NodeView } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { replicaNodeUrl } from '../replica-nodes.ts';
import { inert } from './inert.ts';
import { resolveInstance } from './manage.ts';

export interface LogsOptions {
  node?: string | undefined;
  replica?: string | undefined;
  follow?: boolean;
  since?: string;
  json?: boolean;
}

interface Entry {
  seq: number;
  t: number;
  stream: string;
  src: string;
  line: string;
}

/** One replica's log source: the VMM API of the node that runs it and the VM there. */
export interface ReplicaLogs {
  node: string;
  label: string;
  url: string;
  client: ApiClient;
  vmId: string | null;
  problem?: string;
}

/** `10m`, `2h`, `30s`, `1d`, an ISO time or epoch ms → epoch ms (CLI_USAGE otherwise). */
export function sinceMs(text: string, now = Date.now()): number {
  const m = /^(\d{1,9})(s|m|h|d)$/.exec(text.trim());
  if (m) return now - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's'];
  const t = /^\d{4}-\d\d-\d\d/.test(text) ? Date.parse(text) : /^\d{10,16}$/.test(text) ? Number(text) : Number.NaN;
  if (Number.isNaN(t)) {
    throw new FormError('CLI_USAGE', `Cannot read logs since "${text}": not a duration or a time`, {
      hint: 'Use 30s, 10m, 2h, 1d, or an ISO time such as 2026-01-01T10:00:00Z.',
    });
  }
  return t;
}

/** Which replicas `--replica` means: a node id (prefix), name or address; all when not given. */
export function pickReplicas(
  inst: InstanceView,
  nodes: readonly NodeView[],
  want: string | undefined,
): Array<{ node: string; label: string; view: NodeView | undefined }> {
  const all = inst.replicaSet
    .filter((r) => r.state !== 'deleted')
    .map((r) => {
      const view = nodes.find((n) => n.id === r.node);
      return { node: r.node, label: view?.name ?? `${r.node.slice(0, 10)}…`, view };
    });
  if (!want) return all;
  const w = want.toLowerCase();
  const hit = all.filter((r) => r.node.startsWith(w) || r.label === want || r.view?.address.toLowerCase() === w);
  if (hit.length === 0) {
    throw new FormError('CLI_USAGE', `Cannot find a replica of ${inst.name} on node "${want}"`, {
      hint: `Its replicas run on: ${all.map((r) => r.label).join(', ') || 'no node yet'}.`,
    });
  }
  return hit;
}

/** Each replica's VMM API (the node this CLI talks to, others at their registered endpoint) and VM id. */
export async function locate(
  inst: InstanceView,
  nodes: readonly NodeView[],
  opts: { node?: string | undefined; replica?: string | undefined },
  key: KeyPair,
): Promise<ReplicaLogs[]> {
  const { ApiClient } = await import('@formation/service/client');
  const { vmNameFor } = await import('@formation/scheduler');
  const localUrl = await serviceUrl('vmm', opts.node);
  const local = new ApiClient(localUrl, key);
  let localNode: string | null = null;
  try {
    localNode = await local.audience();
  } catch {
    localNode = null;
  }
  const name = vmNameFor(inst);
  const out: ReplicaLogs[] = [];
  for (const r of pickReplicas(inst, nodes, opts.replica)) {
    // The node this CLI talks to directly; another replica's node at its registered endpoint (reachable
    // on a devnet or a LAN; over the internet that needs the nodes' public API transport).
    const url = r.node === localNode ? localUrl : replicaNodeUrl(r.view?.endpoint, 'vmm', localUrl);
    if (!url) {
      out.push({ node: r.node, label: r.label, url: '', client: local, vmId: null, problem: 'no address known' });
      continue;
    }
    const c = url === localUrl ? local : new ApiClient(url, key, 10_000, r.node);
    try {
      const { vms } = await c.request<{ vms: Array<{ id: string; name: string }> }>('GET', '/vms');
      const vm = vms.find((v) => v.name === name);
      out.push({
        node: r.node,
        label: r.label,
        url,
        client: c,
        vmId: vm?.id ?? null,
        ...(vm ? {} : { problem: 'no VM there (yet)' }),
      });
    } catch (err) {
      out.push({ node: r.node, label: r.label, url, client: c, vmId: null, problem: (err as Error).message });
    }
  }
  return out;
}

/** One output line: JSON (the line exact, escaped by JSON), or text labelled with its replica, made inert. */
export function formatLine(
  e: Entry,
  r: Pick<ReplicaLogs, 'node' | 'label'>,
  json: boolean,
  c: Pick<typeof pc, 'cyan' | 'dim'> = pc,
): string {
  if (json) {
    return `${JSON.stringify({ time: new Date(e.t).toISOString(), t: e.t, node: r.node, replica: r.label, stream: e.stream, src: e.src, seq: e.seq, line: e.line })}\n`;
  }
  const tag = e.stream === 'app' ? c.cyan(inert(r.label)) : c.dim(inert(`${r.label} ${e.src}`));
  return `${c.dim(new Date(e.t).toISOString())} ${tag} ${inert(e.line)}\n`;
}

function print(e: Entry, r: ReplicaLogs, json: boolean): void {
  process.stdout.write(formatLine(e, r, json));
}

/**
 * `form logs <instance>`: the entrypoint's output and the guest services' logs of every replica, merged
 * by time and labelled with the replica's node. `-f` keeps following (long polls, one per replica).
 */
export async function logs(ref: string, opts: LogsOptions): Promise<number> {
  const since = opts.since ? sinceMs(opts.since) : undefined;
  const key = await developerKey();
  const { httpStateClient } = await import('@formation/state/client');
  const state = httpStateClient(await serviceUrl('state', opts.node));
  const inst = await resolveInstance(state, ref, /^[0-9a-f]{32}$/.test(ref) ? undefined : key.address);
  if (inst.ownerAddress !== key.address) {
    throw new FormError('AUTH_FORBIDDEN', `Cannot read the logs of ${inst.name}: it belongs to ${inst.ownerAddress}`, {
      hint: 'Only the key that shipped an instance reads its logs.',
    });
  }
  const replicas = await locate(inst, await state.nodes(), opts, key);
  const usable = replicas.filter((r) => r.vmId);
  for (const r of replicas.filter((x) => !x.vmId))
    process.stderr.write(`${pc.yellow('warning')}: replica on ${r.label}: cannot read its logs (${r.problem})\n`);
  if (usable.length === 0) {
    throw new FormError('NOT_FOUND', `Cannot read the logs of ${inst.name}: no replica's VM could be reached`, {
      hint: 'Check `form manage get status` (is a replica running?), or ask the node that runs it with --node.',
    });
  }
  const q = since !== undefined ? `since=${since}` : '';
  const batches = await Promise.all(
    usable.map(async (r) => {
      const res = await r.client.request<{ entries: Entry[]; lastSeq: number }>('GET', `/vms/${r.vmId}/logs?${q}`);
      return { r, res };
    }),
  );
  const merged = batches.flatMap(({ r, res }) => res.entries.map((e) => ({ e, r })));
  merged.sort((a, b) => a.e.t - b.e.t || a.r.label.localeCompare(b.r.label) || a.e.seq - b.e.seq);
  for (const { e, r } of merged) print(e, r, opts.json === true);
  if (!opts.follow) return 0;
  // Follow: one long poll loop per replica; lines print as they arrive (each replica's in order).
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
    process.exit(0);
  });
  await Promise.all(
    batches.map(async ({ r, res }) => {
      let after = res.lastSeq;
      while (!stop) {
        try {
          const next = await r.client.request<{ entries: Entry[]; lastSeq: number }>(
            'GET',
            `/vms/${r.vmId}/logs?follow=true&after=${after}&waitMs=20000`,
            undefined,
            { timeoutMs: 30_000 },
          );
          for (const e of next.entries) print(e, r, opts.json === true);
          after = next.lastSeq;
        } catch (err) {
          process.stderr.write(`${pc.yellow('warning')}: replica on ${r.label}: ${(err as Error).message}; retrying\n`);
          await new Promise((ok) => setTimeout(ok, 2000));
        }
      }
    }),
  );
  return 0;
}
