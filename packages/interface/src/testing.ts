/**
 * The shared test kit (`@formation/interface/testing`, Node only): `requireOrSkip` for tests that need
 * this machine to have something, `until` for polling instead of fixed sleeps.
 */
import { existsSync } from 'node:fs';
import { integrationPrerequisites } from './integration.ts';

export interface TestNeeds {
  /** Needs root (namespaces, TAP, WireGuard, chroot). */
  root?: boolean;
  /** Programs that must be on PATH. */
  programs?: string[];
  /** Files that must exist: a path, or `{ path, name }` to name what is missing (e.g. the apt package). */
  files?: Array<string | { path: string; name: string }>;
  /** Any other check: why the test cannot run here, or '' / false / undefined when it can. */
  check?: () => string | false | undefined;
}

/**
 * The node:test `skip` value for a test that needs `needs`: the reason it cannot run here, or false when
 * it can. With FORM_REQUIRE_INTEGRATION=1 (what CI and scripts/test.sh set) a missing prerequisite throws
 * instead, so a test never passes by skipping what it was meant to prove.
 *
 * @example
 * const skip = requireOrSkip('web e2e test', { root: true, programs: ['qemu-system-x86_64'] });
 * describe('…', { skip }, () => { … });
 */
export function requireOrSkip(what: string, needs: TestNeeds): string | false {
  const why = integrationPrerequisites(what, needs);
  if (why) return why;
  const missing = (needs.files ?? [])
    .map((f) => (typeof f === 'string' ? { path: f, name: f } : f))
    .filter((f) => !existsSync(f.path))
    .map((f) => f.name);
  const reason = missing.length ? `missing ${missing.join(', ')}` : needs.check?.() || '';
  if (!reason) return false;
  if (process.env.FORM_REQUIRE_INTEGRATION === '1') throw new Error(`${what} ${reason}`);
  return reason;
}

/**
 * Polls `fn` every `everyMs` until it returns a truthy value (returned) or `timeoutMs` passes (throws
 * "timed out waiting for <what>", with the last error `fn` threw). A throwing `fn` is retried.
 */
export async function until<T>(
  what: string,
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
