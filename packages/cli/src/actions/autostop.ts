import { AUTOSTOP_EXPECTED, FormError, MAX_AUTOSTOP_MINUTES, parseAutostop } from '@formation/interface';
import { printJson } from '../output.ts';
import { client, ownInstance } from './manage.ts';

export { MAX_AUTOSTOP_MINUTES };

/**
 * `form manage autostop`'s idle time, as the Formfile's AUTOSTOP takes it (`parseAutostop`): whole
 * minutes 1..10080 (`15`, `15m`, `2h`, `1h30m`, `1d`), or `off` (0). Throws CLI_USAGE.
 *
 * @example parseIdleMinutes('15') // 15
 * @example parseIdleMinutes('2h') // 120
 * @example parseIdleMinutes('off') // 0
 */
export function parseIdleMinutes(s: string): number {
  const v = parseAutostop(s);
  if (typeof v === 'number') return v;
  throw new FormError('CLI_USAGE', `Cannot set autostop to ${JSON.stringify(s)}: ${v.why}`, {
    hint: `Give ${AUTOSTOP_EXPECTED}. Example: form manage autostop hello-server 15m`,
  });
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
