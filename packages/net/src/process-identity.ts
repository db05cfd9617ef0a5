import { readFileSync } from 'node:fs';

/** A process named so that a reused PID is not mistaken for it: its PID and start time (clock ticks after boot). */
export interface ProcessIdentity {
  pid: number;
  start: number;
}

/**
 * Start time and state of `pid` from `/proc/<pid>/stat` (fields 22 and 3), or undefined when there is
 * no such process. The command name (field 2) may hold spaces and parentheses: parse after the last `)`.
 */
export function readProcStat(pid: number): { start: number; state: string } | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const start = Number(rest[19]);
  if (!Number.isFinite(start)) return undefined;
  return { start, state: rest[0] ?? '?' };
}

/** This process's (or `pid`'s) identity, to record and check later with `isSameProcess`. */
export function processIdentity(pid: number = process.pid): ProcessIdentity | undefined {
  const s = readProcStat(pid);
  return s ? { pid, start: s.start } : undefined;
}

/**
 * True when `id` still names a live process: same PID, same start time, not a zombie. A PID reused by
 * another process has another start time, so it is not ours.
 */
export function isSameProcess(id: ProcessIdentity | null | undefined): boolean {
  if (!id) return false;
  const s = readProcStat(id.pid);
  return s !== undefined && s.start === id.start && s.state !== 'Z' && s.state !== 'X';
}

/**
 * End the process `id` names (SIGTERM, SIGKILL after `graceMs`), only if it still is that process.
 * Returns whether it was alive.
 */
export async function endProcess(id: ProcessIdentity | null | undefined, graceMs = 3_000): Promise<boolean> {
  if (!id || !isSameProcess(id)) return false;
  try {
    process.kill(id.pid, 'SIGTERM');
  } catch {
    return false;
  }
  const deadline = Date.now() + graceMs;
  while (isSameProcess(id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (isSameProcess(id)) {
    try {
      process.kill(id.pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    const hard = Date.now() + 5_000;
    while (isSameProcess(id) && Date.now() < hard) await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
