import { existsSync } from 'node:fs';

/**
 * Where the trust in a report comes from. `software` is what runs on this platform: the node measures
 * what it hands the hypervisor and signs that. `sev-snp` and `tdx` are slots for hardware reports; they
 * are only "available" where the hardware interface exists and never claim protection otherwise.
 */
export type ProviderName = 'software' | 'sev-snp' | 'tdx';

export interface TeeProvider {
  name: ProviderName;
  /** Whether this provider can produce evidence here, and why not. */
  available(): { ok: boolean; reason: string };
  /** Who must be trusted for a report of this provider to mean anything. */
  trust: string;
  protects: string[];
  doesNotProtect: string[];
}

export const softwareProvider: TeeProvider = {
  name: 'software',
  available: () => ({ ok: true, reason: 'always available (node-signed measurement, no hardware root of trust)' }),
  trust:
    'You trust the node operator and its hypervisor: the node computes the measurement from the files it ' +
    'boots and signs it with its node key. A malicious node can lie, read guest memory and see secrets.',
  protects: [
    'an honest node booting a different image than the Formpack you built (tampered or stale kernel, initramfs, disk, command line, size)',
    'a report replayed from an earlier request (fresh verifier nonce)',
    'a report signed by a node other than the one the instance is scheduled on',
    'secrets reaching a replica whose attestation failed (the CLI seals only to attested guest keys)',
    'secrets in transit through the node API and at rest on the node (only the guest can open them)',
    'the node operator reading /data at rest: the data disk is LUKS-encrypted with a key only attested guests receive (`form disk unlock`)',
  ],
  doesNotProtect: [
    'a malicious or compromised node/hypervisor (it can fake measurements, read guest RAM and secrets)',
    'changes the guest makes to its own disk after boot (only the boot state is measured)',
    'data written outside /data (the root disk overlay is not encrypted at rest), and rollback or corruption of /data (no integrity protection)',
  ],
};

function hardwareProvider(
  name: 'sev-snp' | 'tdx',
  devices: string[],
  what: string,
  exists: (p: string) => boolean,
): TeeProvider {
  return {
    name,
    available: () => {
      const dev = devices.find((d) => exists(d));
      return dev
        ? { ok: false, reason: `${dev} exists, but Formation does not collect ${what} reports yet` }
        : { ok: false, reason: `not available on this host (no ${devices.join(' or ')})` };
    },
    trust: `Would trust the CPU vendor's ${what} firmware and keys instead of the node operator.`,
    protects: [`(when implemented) guest memory and boot measurement against the node operator, via ${what}`],
    doesNotProtect: ['nothing is protected by this provider on this host: it produces no evidence here'],
  };
}

/** Every provider known to this build; `exists` is injectable for tests. */
export function providers(exists: (p: string) => boolean = existsSync): TeeProvider[] {
  return [
    softwareProvider,
    hardwareProvider('sev-snp', ['/dev/sev-guest', '/dev/sev'], 'AMD SEV-SNP', exists),
    hardwareProvider('tdx', ['/dev/tdx_guest', '/dev/tdx-guest'], 'Intel TDX', exists),
  ];
}

export function provider(name: string): TeeProvider | undefined {
  return providers().find((p) => p.name === name);
}
