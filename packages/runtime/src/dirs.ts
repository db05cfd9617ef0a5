import { chmod, lstat, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FormError } from '@formation/interface';

/**
 * Create a state or cache directory (missing parents too) with `mode`, or check the one that is
 * there: a real directory (not a symlink), owned by the user we run as, not writable by group or
 * others. A directory someone else made first (in /var/tmp anyone can) would let them replace base
 * layers, images or checkpoints: refused, with what to do.
 *
 * @example
 * await ownedDir('/var/tmp/formation-runtime-cache'); // 0700, ours
 */
export async function ownedDir(path: string, mode = 0o700): Promise<string> {
  const created = await mkdir(path, { recursive: true, mode });
  // mkdir applies the umask; a directory we just made gets exactly `mode`
  if (created !== undefined) await chmod(path, mode);
  const st = await lstat(path);
  const uid = process.getuid?.() ?? st.uid;
  const problem = st.isSymbolicLink()
    ? 'it is a symbolic link'
    : !st.isDirectory()
      ? 'it is not a directory'
      : st.uid !== uid
        ? `it is owned by uid ${st.uid}, not by uid ${uid} that the runtime runs as`
        : (st.mode & 0o022) !== 0
          ? `it is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8)})`
          : undefined;
  if (problem)
    throw new FormError('CONFIG_INVALID', `Cannot use ${path} for the runtime's state: ${problem}`, {
      hint: `Someone else may control what is in it. Remove it (or \`chown ${uid} ${path} && chmod ${mode.toString(8)} ${path}\` after checking its contents), or point dataDir elsewhere, then start again.`,
    });
  return path;
}

/**
 * The first directory from `dir` up to / that other users cannot pass (no o+x), or undefined.
 * The image store and the data dir are ours: given o+x (not r, not w) when they lack it.
 */
export async function notPassable(dir: string): Promise<string | undefined> {
  const uid = process.getuid?.();
  for (let d = dir, own = 2; ; d = dirname(d), own--) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      if (own > 0 && st.uid === uid) await chmod(d, (st.mode & 0o7777) | 0o011);
      else return d;
    }
    if (dirname(d) === d) return undefined;
  }
}
