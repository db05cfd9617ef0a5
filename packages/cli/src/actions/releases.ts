// `form manage releases` and `form manage rollback` (issue 20): the releases of an instance as state
// records them, and going back to one — a new release carrying the old one's Formpack and resources,
// rolled out by the nodes like any update.
import { FormError } from '@formation/interface';
import type { InstanceView, ReleaseView } from '@formation/state/client';
import pc from 'picocolors';
import { printJson } from '../output.ts';
import { countOption } from '../replica-count.ts';
import { inert } from './inert.ts';
import { client, ownInstance, resolveInstance } from './manage.ts';

interface Common {
  node?: string;
  json?: boolean;
}

/** The release `form manage rollback` restores by default: the newest one before the target that did not fail. */
export function defaultRollbackTarget(inst: Pick<InstanceView, 'release' | 'releases'>): ReleaseView | undefined {
  const target = inst.release ?? 1;
  return [...(inst.releases ?? [])]
    .filter((r) => r.release < target && r.result !== 'rolled-back' && r.result !== 'failed')
    .sort((a, b) => b.release - a.release)[0];
}

/** One release as a line of text (the failure is what a node wrote: made inert). */
export function formatRelease(
  r: ReleaseView,
  target: number,
  c: Pick<typeof pc, 'green' | 'red' | 'yellow'> = pc,
): string {
  const colour =
    r.result === 'current'
      ? c.green
      : r.result === 'rolled-back' || r.result === 'failed'
        ? c.red
        : r.result === 'rolling'
          ? c.yellow
          : (x: string) => x;
  const mark = r.release === target ? '*' : ' ';
  const res = `${r.resources.vcpu} vCPU ${r.resources.memMiB} MiB`;
  const back = r.rollbackOf ? `  (rollback to ${r.rollbackOf})` : '';
  const why = r.failure ? `  ${inert(r.failure)}` : '';
  return `${mark} ${String(r.release).padStart(3)}  ${r.formpackId.slice(0, 12)}  ${new Date(r.at).toISOString()}  ${r.by}  ${res.padEnd(18)} ${colour(r.result.padEnd(11))}${back}${why}\n`;
}

/** `form manage releases <instance> [--json]`. */
export async function releases(ref: string, opts: Common): Promise<number> {
  const state = await client(opts);
  const inst = await resolveInstance(state, ref);
  const list = inst.releases ?? [];
  const target = inst.release ?? 1;
  if (opts.json) {
    printJson({
      id: inst.id,
      name: inst.name,
      release: target,
      maxUnavailable: inst.maxUnavailable ?? 1,
      releases: list,
    });
    return 0;
  }
  process.stdout.write(`releases of ${inst.name} (${inst.id}); * = the one replicas run toward\n`);
  for (const r of list) process.stdout.write(formatRelease(r, target));
  return 0;
}

/** `form manage rollback <instance> [--to <release>]`: owner-only; a new release restoring an earlier one. */
export async function rollback(ref: string, opts: Common & { to?: string; maxUnavailable?: string }): Promise<number> {
  const state = await client(opts);
  const { key, inst } = await ownInstance(state, ref, 'roll back');
  const list = inst.releases ?? [];
  const target = inst.release ?? 1;
  let to: ReleaseView | undefined;
  if (opts.to !== undefined) {
    const n = Number(opts.to);
    to = list.find((r) => r.release === n);
    if (!to) {
      throw new FormError('CLI_USAGE', `Cannot roll ${inst.name} back to release ${opts.to}: it has no such release`, {
        hint: `Its releases: ${list.map((r) => r.release).join(', ')} (see \`form manage releases ${inst.name}\`).`,
      });
    }
  } else {
    to = defaultRollbackTarget(inst);
    if (!to) {
      throw new FormError('CLI_USAGE', `Cannot roll ${inst.name} back: no good release before release ${target}`, {
        hint: `See \`form manage releases ${inst.name}\`; pick one with --to.`,
      });
    }
  }
  const same = list.find((r) => r.release === target);
  if (same && same.formpackId === to.formpackId && JSON.stringify(same.resources) === JSON.stringify(to.resources)) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot roll ${inst.name} back to release ${to.release}: it already runs that Formpack and resources (release ${target})`,
    );
  }
  const mu = countOption('--max-unavailable', opts.maxUnavailable);
  const release = Math.max(1, ...list.map((r) => r.release)) + 1;
  await state.author(key, 'instance.update', {
    instanceId: inst.id,
    formpackId: to.formpackId,
    resources: to.resources,
    release,
    rollbackOf: to.release,
    ...(mu ? { maxUnavailable: mu } : {}),
  });
  if (opts.json) printJson({ ok: true, id: inst.id, release, rollbackOf: to.release, formpackId: to.formpackId });
  else
    process.stdout.write(
      `Rolling ${inst.name} back to release ${to.release} (Formpack ${to.formpackId.slice(0, 12)}) as release ${release}; follow it with \`form manage releases ${inst.name}\`.\n`,
    );
  return 0;
}
