import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey } from '../node-client.ts';
import { printJson } from '../output.ts';
import { attestAll, planAttestation } from './attest.ts';

interface DiskOptions {
  json?: boolean;
  node?: string;
}

export async function unlock(ref: string, opts: DiskOptions): Promise<number> {
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node);
  if (plan.instance.ownerAddress !== key.address) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot unlock the disk of instance ${plan.instance.name}: it belongs to ${plan.instance.ownerAddress}, you are ${key.address}`,
      { hint: 'Only the key that shipped an instance holds (and makes) its disk key.' },
    );
  }
  const results = await attestAll(plan, key);
  const { attestationSummary, ensureDiskKey, unlockDisk } = await import('@formation/attest');
  const rows: Array<{ vm: string; node: string; attested: string; unlocked: boolean; detail: string }> = [];
  let keyInfo: { path: string; created: boolean } | null = null;
  for (const r of results) {
    const row = { vm: r.target.vm, node: r.target.nodePublicKey, attested: attestationSummary(r) };
    if (!r.verdict.ok) {
      rows.push({ ...row, unlocked: false, detail: `not sent: attestation failed (${r.verdict.reason})` });
      continue;
    }
    try {
      // made only once some replica passed; never leaves this machine unsealed
      const k = ensureDiskKey(plan.instance.id);
      keyInfo ??= { path: k.path, created: k.created };
      const res = await unlockDisk(key, r, k.key);
      rows.push({
        ...row,
        unlocked: true,
        detail: res.output.split('\n').find((l) => l.startsWith('unlocked')) ?? res.output,
      });
    } catch (err) {
      rows.push({ ...row, unlocked: false, detail: (err as Error).message });
    }
  }
  const ok = rows.every((r) => r.unlocked);
  if (opts.json) printJson({ instance: plan.instance.id, ok, key: keyInfo, replicas: rows });
  else {
    if (keyInfo?.created) process.stdout.write(pc.yellow(`new disk key saved in ${keyInfo.path} (0600): back it up\n`));
    for (const r of rows) {
      process.stdout.write(
        `${r.unlocked ? pc.green('UNLOCKED') : pc.red('REFUSED ')} ${r.vm} on node ${r.node.slice(0, 18)}…  ${r.detail}\n`,
      );
    }
  }
  return ok ? 0 : 1;
}

export async function status(ref: string, opts: DiskOptions): Promise<number> {
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node);
  const { diskKeyPath, diskStatus, loadDiskKey } = await import('@formation/attest');
  const states = await Promise.all(plan.targets.map((t) => diskStatus(key, t)));
  const haveKey = loadDiskKey(plan.instance.id) !== null;
  const rows = plan.targets.map((t, i) => ({ vm: t.vm, node: t.nodePublicKey, ...states[i] }));
  if (opts.json) {
    printJson({ instance: plan.instance.id, keyFile: haveKey ? diskKeyPath(plan.instance.id) : null, replicas: rows });
    return 0;
  }
  process.stdout.write(
    haveKey
      ? `disk key: ${diskKeyPath(plan.instance.id)}\n`
      : pc.yellow('disk key: none on this machine yet (`form disk unlock` makes one)\n'),
  );
  for (const r of rows) {
    const word = r.state === 'unlocked' ? pc.green('unlocked') : r.state === 'locked' ? pc.yellow('locked  ') : r.state;
    const extra =
      r.state === 'unlocked'
        ? `mounted at ${r.mount}`
        : r.state === 'locked'
          ? `${r.luks === 'no' ? 'blank (formatted at first unlock)' : 'encrypted'}; run \`form disk unlock ${plan.instance.name}\``
          : (r.error ?? '');
    process.stdout.write(`${word} ${r.vm} on node ${r.node.slice(0, 18)}…  ${extra}\n`);
  }
  return 0;
}
