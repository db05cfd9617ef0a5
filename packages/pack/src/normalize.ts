import type { FormfileSpec } from '@formation/interface';
import { canonicalJson } from './context.ts';

/**
 * The normalized Formfile text the Formpack ID covers. Uses `normalizeFormfile` from
 * `@formation/formfile` when it provides one; canonical JSON (sorted keys) of the spec otherwise.
 */
export function normalizeSpec(spec: FormfileSpec): string {
  return canonicalJson(spec);
}
