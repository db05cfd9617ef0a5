import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

/** Which of `programs` are not on PATH (`command -v`), in their order. */
export function missingPrograms(programs: readonly string[]): string[] {
  return programs.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' }).status !== 0);
}

/** Whether a Debian cloud kernel (`/boot/vmlinuz-*-cloud-amd64`, what every guest boots) is installed. */
export function hasGuestKernel(): boolean {
  return existsSync('/boot') && readdirSync('/boot').some((f) => /^vmlinuz-.+-cloud-amd64$/.test(f));
}

/**
 * For integration tests: why this one cannot run here ('' when it can). Checks root and the programs
 * it needs. With FORM_REQUIRE_INTEGRATION=1 (what CI sets) a missing prerequisite throws instead, so a
 * test never passes by skipping what it was meant to prove.
 *
 * @example
 * const why = integrationPrerequisites('deploy e2e test', { root: true, programs: ['qemu-system-x86_64'] });
 * describe('…', { skip: why || false }, () => { … });
 */
export function integrationPrerequisites(test: string, needs: { root?: boolean; programs?: string[] }): string {
  const missing = missingPrograms(needs.programs ?? []);
  const why =
    needs.root && process.getuid?.() !== 0
      ? 'needs root (namespaces, TAP, WireGuard)'
      : missing.length
        ? `missing ${missing.join(', ')}`
        : '';
  if (why && process.env.FORM_REQUIRE_INTEGRATION === '1') throw new Error(`${test} ${why}`);
  return why;
}
