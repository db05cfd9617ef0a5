import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

/**
 * Test and bench support (not used by the service): what the end-to-end tests of attestation need on
 * the host. Those tests boot real VMs, so they live where a VMM and a builder are at hand
 * (`packages/node/test/attest-e2e.test.ts`, `attest-https-e2e.test.ts`): this package depends on neither.
 */
export function integrationBlocker(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (QEMU networking, mmdebstrap)';
  for (const bin of ['qemu-system-x86_64', 'qemu-img', 'mmdebstrap', 'openssl']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed`;
  }
  if (!readdirSync('/boot').some((f) => f.startsWith('vmlinuz-') && f.includes('cloud'))) {
    return 'no /boot/vmlinuz-*-cloud-amd64 guest kernel';
  }
  return undefined;
}
