import { isIPv4 } from 'node:net';
import { FormError } from '@formation/interface';
import type { InstanceView } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
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
  const { ApiClient } = await import('@formation/service/client');
  const { vmNameFor } = await import('@formation/scheduler');
  const vmm = new ApiClient(await serviceUrl('vmm', opts.node), key, 600_000);
  const { vms } = await vmm.get<{ vms: Array<{ id: string; name: string; network: { ip: string } }> }>('/vms');
  const vm = vms.find((v) => v.name === vmNameFor(inst) && (!isIPv4(ref) || v.network.ip.split('/')[0] === ref));
  if (!vm) {
    throw new FormError('INSTANCE_NOT_FOUND', `Cannot commit ${inst.name}: this node runs no replica of it`, {
      hint: 'Point --node at the node that runs the replica you changed (see `form manage get status`).',
    });
  }
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
