import { missingPrograms } from '@formation/interface';

/**
 * Why the namespace tests cannot run here, or undefined when they can. With
 * FORM_REQUIRE_INTEGRATION=1 a missing prerequisite fails the test instead of skipping it.
 */
export function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root: network namespaces and WireGuard need root';
  const pkg: Record<string, string> = {
    ip: 'iproute2',
    wg: 'wireguard-tools',
    'wireguard-go': 'wireguard-go',
    ping: 'iputils-ping',
  };
  const [bin] = missingPrograms(Object.keys(pkg));
  if (bin) return `${bin} is not installed (apt-get install ${pkg[bin]})`;
  return undefined;
}

export const requireIntegration = process.env.FORM_REQUIRE_INTEGRATION === '1';

/** node:test `skip` option value: a message when the test must be skipped, false otherwise. */
export function skipUnlessIntegration(): string | false {
  const why = missingPrerequisite();
  if (!why) return false;
  return requireIntegration ? false : `SKIPPED: ${why}`;
}
