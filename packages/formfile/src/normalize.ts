import type { FormfileSpec } from '@formation/interface';

/**
 * The canonical JSON text of a spec: object keys sorted at every level, no whitespace. Two Formfiles
 * that mean the same thing give the same string, so the pack builder can hash it (with the context) into
 * the Formpack ID. It contains passwords: hash it, never print or store it.
 *
 * @example
 * sha256Hex(normalizeFormfile(spec))
 */
export function normalizeFormfile(spec: FormfileSpec): string {
  return JSON.stringify(sortKeys(spec));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      const val = (v as Record<string, unknown>)[k];
      if (val !== undefined) out[k] = sortKeys(val);
    }
    return out;
  }
  return v;
}

/** What shows in place of a password. */
export const REDACTED = '[redacted]';

/** A copy of the spec safe to print or send: every `passwd` replaced by "[redacted]". */
export function redactFormfile(spec: FormfileSpec): FormfileSpec {
  return { ...spec, users: spec.users.map((u) => ({ ...u, passwd: u.passwd === null ? null : REDACTED })) };
}
