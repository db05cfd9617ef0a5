import { FormError, type FormpackManifest } from '@formation/interface';

const FULL_ID = /^[0-9a-f]{64}$/;

/** The Formpacks a lookup searches (the Builder's). */
export interface FormpackCatalog {
  list(): FormpackManifest[];
  get(id: string): FormpackManifest | null;
}

/** A manifest as shown to someone who is not its owner: ENV values replaced by "[redacted]". */
export function publicManifest(m: FormpackManifest): FormpackManifest {
  return {
    ...m,
    formfile: { ...m.formfile, env: m.formfile.env.map((e) => ({ ...e, value: '[redacted]' })) },
  };
}

function notFound(idOrPrefix: string): FormError {
  return new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${idOrPrefix}`, {
    hint: 'List them with `form pack list`.',
  });
}

/**
 * The manifest of Formpack `idOrPrefix`: a full ID, or a prefix that only one ID has. Refused: a
 * prefix of several IDs (BAD_REQUEST, with how many), no such Formpack (PACK_NOT_FOUND).
 *
 * @example
 * findFormpack(builder, 'a3f9c2').id; // 'a3f9c2…' (64 hex)
 */
export function findFormpack(catalog: FormpackCatalog, idOrPrefix: string): FormpackManifest {
  let id = idOrPrefix;
  if (!FULL_ID.test(idOrPrefix)) {
    const found = catalog.list().filter((m) => m.id.startsWith(idOrPrefix));
    if (found.length > 1)
      throw new FormError('BAD_REQUEST', `Cannot pick a Formpack: ${idOrPrefix} matches ${found.length} IDs`);
    if (found.length === 0) throw notFound(idOrPrefix);
    id = found[0]!.id;
  }
  const m = catalog.get(id);
  if (!m) throw notFound(idOrPrefix);
  return m;
}
