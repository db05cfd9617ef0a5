import { readFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { readProcStat } from '@formation/net/process-identity';
import { type NodeInfo, nodePaths } from './config.ts';

/** The formationd program: the file `form node up` and the devnet run with node (`node <it> --data-dir …`). */
export const FORMATIOND_MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

/**
 * True when a process with this PID runs. A zombie (ended, not yet reaped by its parent — in a
 * container PID 1 may reap late) has ended: it is not alive, as in `isSameProcess`. Without a
 * `/proc` entry to read, whether the PID can be signalled decides.
 */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const stat = readProcStat(pid);
  if (stat) return stat.state !== 'Z' && stat.state !== 'X';
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Read the running daemon's pid and node.json; `running` is false for stale files (and they are removed). */
export async function readDaemon(
  dataDir: string,
): Promise<{ running: boolean; pid: number | null; info: NodeInfo | null }> {
  const paths = nodePaths(dataDir);
  let pid: number | null = null;
  try {
    pid = Number.parseInt((await readFile(paths.pidFile, 'utf8')).trim(), 10) || null;
  } catch {}
  let info: NodeInfo | null = null;
  try {
    info = JSON.parse(await readFile(paths.infoFile, 'utf8')) as NodeInfo;
  } catch {}
  const running = pid !== null && pidAlive(pid) && (await isFormationd(pid));
  if (!running && pid !== null) {
    await rm(paths.pidFile, { force: true });
    await rm(paths.infoFile, { force: true });
  }
  return { running, pid: running ? pid : null, info: running ? info : null };
}

/** Guard against PID reuse: the process must be our daemon. */
async function isFormationd(pid: number): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('formationd') || cmdline.includes('packages/node/src/main.ts');
  } catch {
    return false;
  }
}
