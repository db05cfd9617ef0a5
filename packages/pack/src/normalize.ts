import { normalizeFormfile } from '@formation/formfile';
import type { FormfileSpec } from '@formation/interface';

/** The normalized Formfile text the Formpack ID covers (`normalizeFormfile` of @formation/formfile). */
export function normalizeSpec(spec: FormfileSpec): string {
  return normalizeFormfile(spec);
}
