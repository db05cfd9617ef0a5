// How many replicas a user may ask for, in one place: `--replicas` and `--max-unavailable` of
// `form pack ship`, `--max-unavailable` of `form manage rollback`, and `form manage scale <n>`.
import { FormError } from '@formation/interface';

/** The most replicas an instance may have (and so the most a rolling update may replace at once). */
export const MAX_REPLICAS = 16;

/**
 * `value` as a replica count (a whole number from 1 to MAX_REPLICAS); otherwise a CLI_USAGE error
 * "Cannot <what>: give a whole number from 1 to 16".
 *
 * @example replicaCount('3', 'scale to 3 replicas') // 3
 */
export function replicaCount(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_REPLICAS) {
    throw new FormError('CLI_USAGE', `Cannot ${what}: give a whole number from 1 to ${MAX_REPLICAS}`);
  }
  return n;
}

/** A count option (`--replicas`, `--max-unavailable`): undefined when not given, else checked by `replicaCount`. */
export function countOption(flag: string, value: string | undefined): number | undefined {
  return value === undefined ? undefined : replicaCount(value, `use ${flag} ${value}`);
}
