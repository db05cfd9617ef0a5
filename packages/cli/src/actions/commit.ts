import { isIPv4 } from 'node:net';
import { FormError } from '@formation/interface';
import type { InstanceView } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { replicaNodeUrl } from '../replica-nodes.ts';
import { resolveInstance } from './manage.ts';

interface CommitResult {
  revision: number;
  sha256: string;
  bytes: number;
  frozenMs: number;
}

export async function commit(ref: string, opts: { node?: string; json?: boolean }): Promise<number> {
  const t0 = Date.now();
  const key = await developerKey();
  const { httpStateClient } = await import('@formation/state/client');
  const state = httpStateClient(await serviceUrl('state', opts.node));
  let inst: InstanceView | undefined;
  if (isIPv4(ref)) {
    inst = (await state.instances()).find((i) => !i.deleted && i.replicaSet.some((r) => r.formnetIp === ref));
    if (!inst) throw new FormError('INSTANCE_NOT_FOUND', `Cannot commit ${ref}: no instance has that formnet address`);
  } else {
    inst = await resolveInstance(state, ref, key.address);
  }
  if (inst.ownerAddress !== key.address) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot commit instance ${inst.name}: it belongs to ${inst.ownerAddress}, you are ${key.address}`,
      {
        hint: 'Only the key that shipped an instance may commit it.',
      },
    );
  }
  const { vm, vmm } = await findReplicaVm(inst, isIPv4(ref) ? ref : null, key, opts.node);
  // The node's agent freezes the guest, the VMM copies and hashes the disk, the guest thaws.
  const r = await vmm.post<CommitResult>(`/vms/${vm.id}/commit`, {});
  const revision = inst.revision + 1;
  await state.author(key, 'instance.commit', { instanceId: inst.id, revision, hash: r.sha256 });
  if (opts.json) {
    printJson({
      instance: inst.id,
      revision,
      sha256: r.sha256,
      bytes: r.bytes,
      frozenMs: r.frozenMs,
      ms: Date.now() - t0,
    });
  } else {
    process.stdout.write(
      `${pc.green('✔')} Committed ${pc.bold(inst.name)} as revision ${revision} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, guest frozen ${r.frozenMs} ms)\n` +
        `  sha256 ${r.sha256}\n`,
    );
  }
  return 0;
}

/**
 * The VM of one of `inst`'s replicas and a client for its node's VMM: the node this CLI talks to when
 * it runs one, else each other replica's node at its registered endpoint (over TLS pinned to that
 * node's key from state when it is on another host) — so `form commit <name>` works from anywhere.
 */
async function findReplicaVm(
  inst: InstanceView,
  ip: string | null,
  key: Awaited<ReturnType<typeof developerKey>>,
  node: string | undefined,
): Promise<{ vm: { id: string }; vmm: import('@formation/service/client').ApiClient }> {
  const { ApiClient } = await import('@formation/service/client');
  const { vmNameFor } = await import('@formation/scheduler');
  const { httpStateClient } = await import('@formation/state/client');
  const localUrl = await serviceUrl('vmm', node);
  const local = new ApiClient(localUrl, key, 600_000);
  const localNode = await local.audience().catch(() => null);
  const replicas = inst.replicaSet
    .filter((r) => r.assigned !== false && r.state !== 'deleted' && (!ip || r.formnetIp === ip))
    .sort((a, b) => Number(b.node === localNode) - Number(a.node === localNode));
  const views = replicas.some((r) => r.node !== localNode)
    ? await httpStateClient(await serviceUrl('state', node)).nodes()
    : [];
  const tried: string[] = [];
  for (const r of replicas) {
    const view = views.find((n) => n.id === r.node);
    const url = r.node === localNode ? localUrl : replicaNodeUrl(view?.endpoint, 'vmm', localUrl);
    const label = view?.name ?? `${r.node.slice(0, 10)}…`;
    if (!url) {
      tried.push(`${label}: no reachable address registered`);
      continue;
    }
    const vmm = r.node === localNode ? local : new ApiClient(url, key, 600_000, r.node);
    try {
      const { vms } = await vmm.get<{ vms: Array<{ id: string; name: string; network: { ip: string } }> }>('/vms');
      const vm = vms.find((v) => v.name === vmNameFor(inst) && (!ip || v.network.ip.split('/')[0] === ip));
      if (vm) return { vm, vmm };
      tried.push(`${label}: no VM of it there`);
    } catch (err) {
      tried.push(`${label}: ${(err as Error).message}`);
    }
  }
  throw new FormError('INSTANCE_NOT_FOUND', `Cannot commit ${inst.name}: no node running a replica of it answered`, {
    hint: tried.length
      ? `Tried: ${tried.join('; ')}. See \`form manage get status ${inst.name}\`.`
      : `It has no replica placed yet; see \`form manage get status ${inst.name}\`.`,
  });
}
