import { readFileSync } from 'node:fs';

/**
 * True when a process with this pid exists and is not a zombie (its state in `/proc/<pid>/stat`, read
 * after the command name, which may hold spaces and parentheses). 0 or undefined: false.
 *
 * @example processAlive(child.pid) // false once it exited, even before its parent reaped it
 */
export function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
