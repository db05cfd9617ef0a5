import { formatDiagnostics, loadFormfile, parseFormfile, validateBuildContext } from '@formation/formfile';
import { FormError, type FormfileSpec } from '@formation/interface';

/**
 * Read, parse and check the Formfile of build directory `dir` (and its COPY sources).
 * `displayName` replaces the file path in messages (the API does not show its temp paths).
 * Throws the first diagnostic's FORMFILE_* code with every problem listed, positioned.
 */
export async function loadSpec(
  dir: string,
  file = 'Formfile',
  displayName?: string,
): Promise<{ spec: FormfileSpec; dir: string }> {
  const loaded = await loadFormfile(dir, file);
  const parsed = parseFormfile(loaded.text);
  const all = [...parsed.errors, ...(await validateBuildContext(parsed, loaded.dir, parsed.copyPositions))];
  if (all.length > 0 || !parsed.spec) {
    throw new FormError(
      all[0]?.code ?? 'FORMFILE_SYNTAX',
      `Cannot build: the Formfile is invalid\n${formatDiagnostics(all, { file: displayName ?? loaded.path, text: loaded.text })}`,
      {
        hint: 'Fix the lines above; `form pack validate` checks a Formfile without building.',
        details: { errors: all },
      },
    );
  }
  return { spec: parsed.spec, dir: loaded.dir };
}
