/**
 * A POSIX ustar archive of files picked in the browser (a directory upload), as the pack API takes.
 * Browsers do not expose file modes: every file is stored 0644 (upload a .tar/.tar.gz to keep modes).
 */
export interface PickedFile {
  /** Path inside the build context, `/`-separated, relative. */
  path: string;
  file: Blob & { lastModified?: number };
}

/** What <input webkitdirectory> gives per file (a File), as much as this module reads. */
export type DirectoryEntry = Blob & { name: string; lastModified?: number; webkitRelativePath?: string };

const enc = new TextEncoder();

function put(h: Uint8Array, off: number, len: number, s: string): void {
  const b = enc.encode(s);
  if (b.length > len) throw new Error(`tar: "${s}" is too long for its field`);
  h.set(b, off);
}

function octal(n: number, len: number): string {
  return `${Math.floor(n)
    .toString(8)
    .padStart(len - 1, '0')}\0`;
}

/** Split a long path into ustar's prefix (≤155 bytes) and name (≤100 bytes). */
function splitPath(path: string): { prefix: string; name: string } {
  if (enc.encode(path).length <= 100) return { prefix: '', name: path };
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (enc.encode(prefix).length <= 155 && enc.encode(name).length <= 100) return { prefix, name };
  }
  throw new Error(`The path ${path} is too long to upload (ustar allows 255 bytes)`);
}

export function header(path: string, size: number, mtimeMs: number): Uint8Array {
  const h = new Uint8Array(512);
  const { prefix, name } = splitPath(path);
  put(h, 0, 100, name);
  put(h, 100, 8, octal(0o644, 8));
  put(h, 108, 8, octal(0, 8));
  put(h, 116, 8, octal(0, 8));
  put(h, 124, 12, octal(size, 12));
  put(h, 136, 12, octal(mtimeMs / 1000, 12));
  put(h, 148, 8, '        ');
  put(h, 156, 1, '0');
  put(h, 257, 6, 'ustar\0');
  put(h, 263, 2, '00');
  put(h, 345, 155, prefix);
  let sum = 0;
  for (const b of h) sum += b;
  put(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** The archive of `files` (in the given order), ending with the two zero blocks. */
export function tarBlob(files: readonly PickedFile[]): Blob {
  const parts: Array<Uint8Array<ArrayBuffer> | Blob> = [];
  for (const f of files) {
    parts.push(header(f.path, f.file.size, f.file.lastModified ?? Date.now()) as Uint8Array<ArrayBuffer>, f.file);
    const pad = (512 - (f.file.size % 512)) % 512;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(1024));
  return new Blob(parts, { type: 'application/x-tar' });
}

/** Directories a build context never needs; skipped from directory uploads. */
export const SKIPPED_DIRS = ['.git', 'node_modules'];

/**
 * The build context of a directory picked with <input webkitdirectory>: paths relative to the picked
 * directory (its own name dropped), VCS/dependency folders skipped.
 */
export function contextFromDirectory(files: ArrayLike<DirectoryEntry>): { files: PickedFile[]; skipped: number } {
  const out: PickedFile[] = [];
  let skipped = 0;
  for (const file of Array.from(files)) {
    const rel = (file.webkitRelativePath || file.name).split('/').slice(1).join('/') || file.name;
    if (rel.split('/').some((seg: string) => SKIPPED_DIRS.includes(seg))) {
      skipped++;
      continue;
    }
    out.push({ path: rel, file });
  }
  out.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { files: out, skipped };
}
