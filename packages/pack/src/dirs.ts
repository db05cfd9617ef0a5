import { lstatSync, mkdirSync } from 'node:fs';
import { FormError } from '@formation/interface';

/**
 * Make sure `path` is a directory only this process's user controls: created with mode 0700 when it
 * is missing; when it exists it must be a real directory (not a symlink), owned by our uid, and not
 * writable by group or others. A cache in /var/tmp that another local user created first would let
 * them plant every base layer and initramfs; a data dir they can write lets them plant Formpacks.
 */
export function ensurePrivateDir(path: string, what: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const st = lstatSync(path);
  const uid = process.getuid?.() ?? 0;
  const fix = `Remove ${path} (or \`chown ${uid} ${path} && chmod 700 ${path}\` if you made it), then start again; if you did not make it, another local user may have.`;
  if (!st.isDirectory()) {
    throw new FormError(
      'PACK_UNSAFE_DIR',
      `Cannot use ${what} ${path}: it is a ${st.isSymbolicLink() ? 'symlink' : 'file'}, not a directory`,
      { hint: fix },
    );
  }
  if (st.uid !== uid) {
    throw new FormError(
      'PACK_UNSAFE_DIR',
      `Cannot use ${what} ${path}: it is owned by uid ${st.uid}, not by this process's uid ${uid}`,
      { hint: fix },
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw new FormError(
      'PACK_UNSAFE_DIR',
      `Cannot use ${what} ${path}: it is writable by ${st.mode & 0o002 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`,
      { hint: fix },
    );
  }
}
