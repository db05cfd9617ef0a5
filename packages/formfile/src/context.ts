import { lstat, realpath, stat } from 'node:fs/promises';
import { relative, resolve, sep } from 'node:path';
import { FormError, type FormfileSpec } from '@formation/interface';
import type { FormfileDiagnostic, SourcePosition } from './diagnostic.ts';

/**
 * Check that every COPY source exists inside the build directory `dir`: not absolute, no `..` escape and no
 * symlink that resolves outside it (realpath check). Returns one diagnostic per bad source, positioned when
 * `positions` (from `parseFormfile`'s `copyPositions`) is given. Throws FORMFILE_NOT_FOUND if `dir` itself
 * is missing or not a directory.
 *
 * Only the named sources are resolved: a symlink *inside* a copied directory must be archived as a link,
 * never followed, by whoever packs the context.
 *
 * @example
 * const parsed = parseFormfile(text); // a ParseResult carries `copy` even when spec is null
 * const errors = await validateBuildContext(parsed, 'examples/hello-server', parsed.copyPositions);
 */
export async function validateBuildContext(
  spec: Pick<FormfileSpec, 'copy'>,
  dir: string,
  positions: readonly SourcePosition[] = [],
): Promise<FormfileDiagnostic[]> {
  let root: string;
  try {
    root = await realpath(dir);
    if (!(await stat(root)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw new FormError('FORMFILE_NOT_FOUND', `Cannot check the build context: ${dir} is not a directory`, {
      cause: err,
      details: { code: (err as NodeJS.ErrnoException).code },
    });
  }
  const out: FormfileDiagnostic[] = [];
  for (const [i, c] of spec.copy.entries()) {
    const at = positions[i] ?? {};
    const bad = (message: string) => out.push({ code: 'FORMFILE_BAD_PATH', message, ...at });
    if (c.src.startsWith('/') || c.src.includes('\0')) {
      bad(`COPY source "${c.src}" must be relative to the build directory`);
      continue;
    }
    const target = resolve(root, c.src);
    if (!inside(root, target)) {
      bad(`COPY source "${c.src}" is outside the build directory ('..' may not leave it)`);
      continue;
    }
    try {
      await lstat(target);
    } catch {
      bad(`COPY source "${c.src}" does not exist in the build directory ${dir}`);
      continue;
    }
    let real: string;
    try {
      real = await realpath(target);
    } catch {
      bad(`COPY source "${c.src}" is a broken symlink`);
      continue;
    }
    if (!inside(root, real)) {
      bad(`COPY source "${c.src}" is a symlink that leads outside the build directory`);
    }
  }
  return out;
}

function inside(root: string, p: string): boolean {
  if (p === root) return true;
  const rel = relative(root, p);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep);
}
