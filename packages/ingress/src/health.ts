import type { HealthcheckSpec } from '@formation/interface';

/**
 * A replica's health (Docker's model): `starting` until its first passing check, `healthy` after a
 * pass, `unhealthy` after `retries` consecutive failures that are not in the start period (failures in
 * it are not counted unless a check has passed since boot), `healthy` again at the next pass.
 */
export type HealthStatus = 'starting' | 'healthy' | 'unhealthy';

/** One check's outcome. `at` is when the check started (ms, the prober's clock). */
export interface CheckResult {
  at: number;
  ok: boolean;
  /** Why it failed (`connect ECONNREFUSED`, `status 503`, `timeout after 3000 ms`); never response content. */
  detail?: string;
}

/** Everything `healthState` needs: when the replica started, and its checks in order. */
export interface HealthHistory {
  startedAt: number;
  results: readonly CheckResult[];
}

/** The folded state: enough to go on from without keeping every result. */
export interface HealthState {
  status: HealthStatus;
  /** A check has passed since boot (ends the start period early). */
  started: boolean;
  /** Consecutive counted failures. */
  failures: number;
}

export const INITIAL_HEALTH: HealthState = { status: 'starting', started: false, failures: 0 };

/**
 * The state after one more check result. Pure.
 *
 * @example
 * let s = INITIAL_HEALTH;
 * s = nextHealth(s, { at: 31_000, ok: false }, spec, 0);
 */
export function nextHealth(
  state: HealthState,
  result: CheckResult,
  spec: Pick<HealthcheckSpec, 'retries' | 'startPeriodMs'>,
  startedAt: number,
): HealthState {
  if (result.ok) return { status: 'healthy', started: true, failures: 0 };
  const counted = state.started || result.at >= startedAt + spec.startPeriodMs;
  if (!counted) return state;
  const failures = state.failures + 1;
  return { status: failures >= spec.retries ? 'unhealthy' : state.status, started: state.started, failures };
}

/**
 * A replica's health from its history of checks (start period, retries → starting / healthy /
 * unhealthy). Pure; table-tested in test/health.test.ts.
 *
 * @example
 * healthState({ startedAt: 0, results: [{ at: 10_000, ok: true }] }, spec) // 'healthy'
 */
export function healthState(
  history: HealthHistory,
  spec: Pick<HealthcheckSpec, 'retries' | 'startPeriodMs'>,
): HealthStatus {
  let s = INITIAL_HEALTH;
  for (const r of history.results) s = nextHealth(s, r, spec, history.startedAt);
  return s.status;
}
