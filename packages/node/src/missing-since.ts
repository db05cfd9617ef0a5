// Since when the proof of each custom domain this node vouched for has been missing (issue 19), kept
// in a file so a restart does not start the grace period again: a node restarted more often than the
// grace (an hour) would otherwise never record a lapse. The file is this node's own bookkeeping, not
// a trust boundary, but it is read defensively: a damaged or foreign file is reported and ignored (the
// clock then starts again, which only delays a lapse), never a crash. Written atomically, 0600.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '@formation/service';

export interface MissingSince {
  get(claim: string): number | undefined;
  has(claim: string): boolean;
  set(claim: string, since: number): void;
  /** True if the claim was there. */
  delete(claim: string): boolean;
}

/** Claims are op ids: hex, at most 128 characters. */
const CLAIM = /^[0-9a-f]{1,128}$/;
/** More entries than this is not a file we wrote (a node vouches for far fewer domains). */
const MAX_ENTRIES = 100_000;

/**
 * The entries of a saved file that make sense at `now`: claim ids of the right shape with a time in
 * the past (a time in the future would make the grace longer, never shorter: refused all the same).
 * Pure; `problem` says why the whole file was dropped.
 */
export function parseMissingSince(text: string, now: number): { entries: Map<string, number>; problem?: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { entries: new Map(), problem: 'not JSON' };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { entries: new Map(), problem: 'not an object of claim → time' };
  }
  const all = Object.entries(raw as Record<string, unknown>);
  if (all.length > MAX_ENTRIES) return { entries: new Map(), problem: `${all.length} entries` };
  const entries = new Map<string, number>();
  for (const [claim, since] of all) {
    if (CLAIM.test(claim) && typeof since === 'number' && Number.isSafeInteger(since) && since > 0 && since <= now) {
      entries.set(claim, since);
    }
  }
  return { entries };
}

/** In memory only (no file): what a node without a data dir, and the tests, use. */
export function memoryMissingSince(): MissingSince {
  return new Map<string, number>();
}

/** Backed by `file` (loaded now, written on every change). */
export function fileMissingSince(file: string, log: Logger, now = Date.now()): MissingSince {
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ err, file }, 'cannot read domain proof clocks');
  }
  const map = new Map<string, number>();
  if (text !== undefined) {
    const { entries, problem } = parseMissingSince(text, now);
    if (problem) log.warn({ file, problem }, 'domain proof clocks ignored: grace periods start again');
    for (const [k, v] of entries) map.set(k, v);
  }
  const save = () => {
    try {
      const tmp = `${file}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(Object.fromEntries(map))}\n`, { mode: 0o600 });
      renameSync(tmp, file);
    } catch (err) {
      // A full disk only costs the clocks across a restart; the node keeps going.
      log.warn({ err, file }, 'cannot save domain proof clocks');
    }
  };
  return {
    get: (c) => map.get(c),
    has: (c) => map.has(c),
    set(c, since) {
      map.set(c, since);
      save();
    },
    delete(c) {
      const had = map.delete(c);
      if (had) save();
      return had;
    },
  };
}
