// Shared by the devnet tests that follow an instance through `form manage get status <id> --json`
// (replicas.test.ts, from-anywhere.test.ts): its shape, the replicas that answer, and waiting for a
// state of it.
import assert from 'node:assert/strict';
import { until } from '@formation/interface/testing';
import type { FormRun } from './run-form.ts';

export interface Replica {
  node: string;
  state: string;
  formnetIp: string | null;
  revision: number;
  reason: string | null;
}
export interface Status {
  status: string;
  revision: number;
  replicas: Replica[];
}

/** The status a `form manage get status --json` run printed (the run must have succeeded). */
export function parseStatus(r: FormRun): Status {
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

/** The replicas running with a formnet address (the ones that can answer). */
export const running = (st: Status): Replica[] => st.replicas.filter((r) => r.state === 'running' && r.formnetIp);

/** A status that is SUCCESS with exactly `n` running replicas. */
export const successWith =
  (n: number) =>
  (st: Status): boolean =>
    st.status === 'SUCCESS' && running(st).length === n;

/** A status with exactly `n` running replicas, every one at `revision`. */
export const allAtRevision =
  (n: number, revision: number) =>
  (st: Status): boolean =>
    running(st).length === n && running(st).every((r) => r.revision === revision);

/** Ask `status()` every `everyMs` until `want` holds for it (at most `timeoutMs`); resolves with that status. */
export function untilStatus(
  what: string,
  status: () => Promise<Status>,
  want: (st: Status) => boolean,
  timeoutMs: number,
  everyMs = 1000,
): Promise<Status> {
  return until(
    what,
    async () => {
      const st = await status();
      return want(st) ? st : undefined;
    },
    timeoutMs,
    everyMs,
  );
}
