import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { isAbsolute, join, posix } from 'node:path';
import { FormError, type FormfileSpec } from '@formation/interface';
import { sha256File } from '@formation/service/files';

/** One file of a build context, as it is hashed and copied. */
export interface ContextEntry {
  /** Path relative to the build directory, POSIX separators. */
  rel: string;
  type: 'file' | 'dir' | 'symlink';
  /** Permission bits. */
  mode: number;
  size: number;
  /** sha256 of a file's content. */
  sha256?: string;
  /** A symlink's target (relative, inside the context). */
  target?: string;
}

/** What goes into the image from the build directory, with its digest. */
export interface BuildContext {
  dir: string;
  entries: ContextEntry[];
  /** sha256 over the sorted entry lines (see README, "Formpack ID"). */
  digest: string;
  bytes: number;
}

/** The Formfile itself (with its plaintext passwords) never goes into an image. */
export const FORMFILE_NAME = 'Formfile';

/** Normalize a COPY source: relative, inside the build directory. */
export function contextPath(src: string): string {
  if (src.includes('\0') || isAbsolute(src)) {
    throw new FormError('FORMFILE_BAD_PATH', `Cannot COPY ${src}: the source must be relative to the build directory`);
  }
  const n = posix.normalize(src.replaceAll('\\', '/'));
  if (n === '..' || n.startsWith('../')) {
    throw new FormError('FORMFILE_BAD_PATH', `Cannot COPY ${src}: it points outside the build directory`);
  }
  return n === './' ? '.' : n.replace(/\/+$/, '') || '.';
}

function walk(dir: string, rel: string, out: ContextEntry[]): void {
  const abs = rel === '.' ? dir : join(dir, rel);
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(abs);
  } catch {
    throw new FormError('FORMFILE_BAD_PATH', `Cannot COPY ${rel}: it does not exist in the build directory`, {
      hint: `Looked for ${abs}.`,
    });
  }
  const mode = st.mode & 0o7777;
  if (st.isSymbolicLink()) {
    const target = readlinkSync(abs);
    const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
    if (isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
      throw new FormError(
        'PACK_BAD_ARCHIVE',
        `Cannot use ${rel}: it is a symlink to ${target}, outside the build directory`,
        {
          hint: 'Copy the file into the build directory instead of linking to it.',
        },
      );
    }
    out.push({ rel, type: 'symlink', mode: 0o777, size: 0, target });
  } else if (st.isDirectory()) {
    if (rel !== '.') out.push({ rel, type: 'dir', mode, size: 0 });
    for (const name of readdirSync(abs).sort()) {
      if (rel === '.' && name === FORMFILE_NAME) continue;
      walk(dir, rel === '.' ? name : `${rel}/${name}`, out);
    }
  } else if (st.isFile()) {
    out.push({ rel, type: 'file', mode, size: st.size });
  } else {
    throw new FormError('PACK_BAD_ARCHIVE', `Cannot use ${rel}: it is a device, socket or FIFO, not a regular file`);
  }
}

/** Which paths (relative to the build directory) the spec takes into the image. */
export function contextSources(spec: FormfileSpec): string[] {
  if (spec.noCopy) return [];
  if (spec.copy.length === 0) return ['.'];
  return spec.copy.map((c) => contextPath(c.src));
}

/**
 * Collect and hash the build context of `spec` in `dir`: the COPY sources, or the whole directory
 * minus the Formfile when there is no COPY and no NOCOPY, or nothing with NOCOPY.
 */
export async function readBuildContext(spec: FormfileSpec, dir: string): Promise<BuildContext> {
  const entries: ContextEntry[] = [];
  for (const src of contextSources(spec)) {
    if (src === FORMFILE_NAME) {
      throw new FormError('FORMFILE_BAD_PATH', 'Cannot COPY the Formfile: it holds plaintext passwords');
    }
    walk(dir, src, entries);
  }
  const seen = new Set<string>();
  const unique = entries.filter((e) => {
    if (seen.has(e.rel)) return false;
    seen.add(e.rel);
    return true;
  });
  unique.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  let bytes = 0;
  for (const e of unique) {
    if (e.type === 'file') {
      e.sha256 = await sha256File(join(dir, e.rel));
      bytes += e.size;
    }
  }
  return { dir, entries: unique, digest: contextDigest(unique), bytes };
}

/** sha256 over one line per entry: `<type> <mode octal> <JSON rel> <sha256 | JSON target | ->`. */
export function contextDigest(entries: ContextEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) {
    const what = e.type === 'file' ? e.sha256 : e.type === 'symlink' ? JSON.stringify(e.target) : '-';
    h.update(`${e.type} ${e.mode.toString(8)} ${JSON.stringify(e.rel)} ${what}\n`);
  }
  return h.digest('hex');
}

/**
 * The Formpack ID: sha256 hex of `formpack-v1\n` + normalized Formfile + `\n` + context digest.
 */
export function formpackId(normalizedFormfile: string, ctxDigest: string): string {
  return createHash('sha256').update(`formpack-v1\n${normalizedFormfile}\n${ctxDigest}`).digest('hex');
}
