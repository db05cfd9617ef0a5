import { createHmac } from 'node:crypto';
import { normalizeFormfile } from '@formation/formfile';
import { FormError, type FormfileSpec } from '@formation/interface';

const ID_KEY_RE = /^[0-9a-f]{64}$/;

/**
 * The normalized Formfile text the Formpack ID covers (`normalizeFormfile` of @formation/formfile),
 * with each USER password replaced by HMAC-SHA256(idKey, "formpack-passwd-v1\n" + user + "\n" +
 * password). The ID is public (manifests, state); without the key nobody can test password guesses
 * against it, while the same inputs with the same key still give the same ID (the cache works).
 * `idKey` (64 hex) is needed only when the spec has passwords.
 */
export function normalizeSpec(spec: FormfileSpec, idKey?: string): string {
  if (!spec.users.some((u) => u.passwd)) return normalizeFormfile(spec);
  if (!idKey || !ID_KEY_RE.test(idKey)) {
    throw new FormError(
      'BAD_REQUEST',
      'Cannot compute the Formpack ID: the Formfile has passwords and no ID key was given',
      {
        hint: 'Pass idKey (64 hex characters; PackClient derives it from your key with formpackIdKey).',
      },
    );
  }
  const key = Buffer.from(idKey, 'hex');
  return normalizeFormfile({
    ...spec,
    users: spec.users.map((u) =>
      u.passwd
        ? {
            ...u,
            passwd: `hmac-sha256:${createHmac('sha256', key).update(`formpack-passwd-v1\n${u.username}\n${u.passwd}`).digest('hex')}`,
          }
        : u,
    ),
  });
}

/** A developer's Formpack ID key, derived from their private key (the same on every machine they use). */
export function formpackIdKey(privateKey: Uint8Array): string {
  return createHmac('sha256', Buffer.from(privateKey)).update('formation formpack id key v1').digest('hex');
}
