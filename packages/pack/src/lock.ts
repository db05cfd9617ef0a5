import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** True while process `pid` exists on this host. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Run `fn` holding an exclusive lock file (works across processes on one host). A lock whose owner
 * process is gone is taken over, so a killed build never blocks later ones.
 */
export async function withLock<T>(path: string, fn: () => Promise<T>, onWait?: () => void): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  let waited = false;
  for (;;) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner = 0;
      try {
        owner = Number(readFileSync(path, 'utf8'));
      } catch {
        continue;
      }
      if (owner && owner !== process.pid && !alive(owner)) {
        rmSync(path, { force: true });
        continue;
      }
      if (!waited) {
        waited = true;
        onWait?.();
      }
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
