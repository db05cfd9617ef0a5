import { FormError } from '@formation/interface';
import { printJson } from '../output.ts';
import { client, ownInstance } from './manage.ts';

/** Longest autostop the state accepts (minutes: one week). */
export const MAX_AUTOSTOP_MINUTES = 10_080;

/**
 * `form manage autostop`'s idle time: whole minutes 1..10080, or `off` (0). Throws CLI_USAGE.
 *
 * @example parseIdleMinutes('15') // 15
 * @example parseIdleMinutes('off') // 0
 */
export function parseIdleMinutes(s: string): number {
  if (s.trim().toLowerCase() === 'off') return 0;
  const n = /^\d{1,6}$/.test(s.trim()) ? Number(s.trim()) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_AUTOSTOP_MINUTES) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot set autostop to ${JSON.stringify(s)}: give whole minutes from 1 to ${MAX_AUTOSTOP_MINUTES}, or off`,
      { hint: 'Example: form manage autostop hello-server 15' },
    );
  }
  return n;
}

/**
 * Scale to zero: replicas of the instance idle (no traffic) for `minutes` are suspended to disk by
 * their node and woken by their next connection. A signed `instance.update` only its owner may make.
 */
export async function autostop(ref: string, minutes: string, opts: { node?: string; json?: boolean }): Promise<number> {
  const autostopMinutes = parseIdleMinutes(minutes);
  const state = await client(opts);
  const { key, inst } = await ownInstance(state, ref, 'set autostop of');
  const changed = (inst.autostopMinutes ?? 0) !== autostopMinutes;
  if (changed) await state.author(key, 'instance.update', { instanceId: inst.id, autostopMinutes });
  if (opts.json) printJson({ ok: true, id: inst.id, autostopMinutes, changed });
  else if (autostopMinutes === 0) process.stdout.write(`Autostop of ${inst.name} is off: its replicas keep running.\n`);
  else
    process.stdout.write(
      `Replicas of ${inst.name} idle for ${autostopMinutes} min are suspended to disk and woken by their next connection; \`form manage get status ${inst.name}\` shows them as suspended.\n`,
    );
  return 0;
}
