import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey } from '../node-client.ts';
import { printJson } from '../output.ts';
import { attestAll, planAttestation } from './attest.ts';

interface DiskOptions {
  json?: boolean;
  node?: string;
  measurement?: string;
}

type AttestPlanOf = Awaited<ReturnType<typeof planAttestation>>;
type UnlockRow = { vm: string; node: string; attested: string; unlocked: boolean; detail: string };

/** The instance's plan, refused for anyone but its owner (only the owner holds, and makes, the disk key). */
async function ownPlan(ref: string, opts: DiskOptions) {
  const key = await developerKey();
  // The disk key goes only to replicas attested against the developer's own measurement.
  const plan = await planAttestation(ref, key, opts.node, {
    use: 'secret',
    sending: 'the disk key',
    measurement: opts.measurement,
    ownerOnly: 'unlock the disk of',
  });
  if (plan.instance.ownerAddress !== key.address) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot unlock the disk of instance ${plan.instance.name}: it belongs to ${plan.instance.ownerAddress}, you are ${key.address}`,
      { hint: 'Only the key that shipped an instance holds (and makes) its disk key.' },
    );
  }
  return { key, plan };
}

/** Attest `plan`'s replicas; seal the disk key to each that passes and have its guest open the disk. */
async function unlockReplicas(
  plan: AttestPlanOf,
  key: Awaited<ReturnType<typeof developerKey>>,
): Promise<{ rows: UnlockRow[]; keyInfo: { path: string; created: boolean } | null }> {
  const results = await attestAll(plan, key);
  const { attestationSummary, ensureDiskKey, unlockDisk } = await import('@formation/attest');
  const rows: UnlockRow[] = [];
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
  return { rows, keyInfo };
}

const ndjson = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`);

function printRows(rows: UnlockRow[], keyInfo: { path: string; created: boolean } | null, prefix = ''): void {
  if (keyInfo?.created) process.stdout.write(pc.yellow(`new disk key saved in ${keyInfo.path} (0600): back it up\n`));
  for (const r of rows) {
    process.stdout.write(
      `${prefix}${r.unlocked ? pc.green('UNLOCKED') : pc.red('REFUSED ')} ${r.vm} on node ${r.node.slice(0, 18)}…  ${r.detail}\n`,
    );
  }
}

export async function unlock(ref: string, opts: DiskOptions & { watch?: boolean | string }): Promise<number> {
  if (opts.watch !== undefined && opts.watch !== false) return watchUnlock(ref, opts, opts.watch);
  const { key, plan } = await ownPlan(ref, opts);
  const { rows, keyInfo } = await unlockReplicas(plan, key);
  const ok = rows.every((r) => r.unlocked);
  if (opts.json) printJson({ instance: plan.instance.id, ok, key: keyInfo, replicas: rows });
  else printRows(rows, keyInfo);
  return ok ? 0 : 1;
}

/**
 * `form disk unlock --watch [s]`: this machine acts as the instance's key service. Every interval it
 * looks for replicas whose data disk is locked (a restart, a replica healed onto another node, a new
 * replica after scaling), attests them, and unlocks the ones that pass. Runs until interrupted.
 * With --json, one JSON line per replica unlocked or refused.
 */
async function watchUnlock(ref: string, opts: DiskOptions, every: true | string): Promise<number> {
  const seconds = every === true ? 10 : Number(every);
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > 3600) {
    throw new FormError('CLI_USAGE', `Cannot watch every ${every} s: give a number of seconds from 1 to 3600`);
  }
  const { key, plan: first } = await ownPlan(ref, opts);
  const { diskStatus } = await import('@formation/attest');
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  if (!opts.json) {
    process.stderr.write(
      pc.dim(
        `watching ${first.instance.name}: locked data disks of attested replicas are unlocked every ${seconds} s (Ctrl-C stops)\n`,
      ),
    );
  }
  const failedBefore = new Map<string, string>();
  try {
    while (!stop.signal.aborted) {
      try {
        const { plan } = await ownPlan(first.instance.id, opts);
        const states = await Promise.all(
          plan.targets.map((t) => diskStatus(key, t).catch(() => ({ state: 'unknown' }))),
        );
        const locked = plan.targets.filter((_, i) => states[i]?.state === 'locked');
        if (locked.length > 0) {
          const { rows, keyInfo } = await unlockReplicas({ ...plan, targets: locked }, key);
          // A replica that keeps failing attestation is reported once per distinct reason, not every round.
          const fresh = rows.filter((r) => r.unlocked || failedBefore.get(`${r.node}/${r.vm}`) !== r.detail);
          for (const r of rows) {
            if (r.unlocked) failedBefore.delete(`${r.node}/${r.vm}`);
            else failedBefore.set(`${r.node}/${r.vm}`, r.detail);
          }
          const at = new Date().toISOString();
          // one compact line per event (NDJSON), so a script can follow it line by line
          if (opts.json) for (const r of fresh) ndjson({ at, instance: plan.instance.id, ...r });
          else printRows(fresh, keyInfo, `${at}  `);
        }
      } catch (err) {
        const e = err as FormError;
        if (opts.json) ndjson({ at: new Date().toISOString(), error: { code: e.code, message: e.message } });
        else process.stderr.write(`${pc.red('error')}: ${e.message} (retrying in ${seconds} s)\n`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, seconds * 1000);
        stop.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
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
