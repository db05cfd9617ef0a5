import { FormError } from '@formation/interface';

/**
 * Where the measurement an instance must attest to comes from, and what a passing attestation is
 * worth then. A report is checked against an *expected* measurement; if the node being attested also
 * supplies that expectation (its pack API's manifest), a node that boots something else can serve a
 * manifest that matches its own report, and the check proves nothing. So:
 *
 * - `local build`: the Formpack was built on this machine; its manifest is the developer's own.
 * - `pinned measurement`: the developer gave `--measurement <sha256>` (from `form pack inspect <id>
 *   --local --measurement` where it was built); the node's manifest is used only if it yields that digest.
 * - `node manifest`: neither. Unverified: `form attest` reports it and fails unless the developer says
 *   `--trust-node-measurement`; secrets and disk keys are never sent on it.
 *
 * (Reproducing the measurement from the Formpack's inputs would need bit-for-bit reproducible
 * builds — the images are not: mmdebstrap and mkfs write timestamps and random UUIDs.)
 */
export type ExpectedFrom = 'local build' | 'pinned measurement' | 'node manifest';

export interface ExpectedSourceInput {
  /** Which manifest the expected inputs were computed from. */
  manifest: 'local build' | 'node manifest';
  /** Digests that manifest gives: for the Formpack's own VCPU/MEM and for the instance's sizes. */
  digests: readonly string[];
  /** `--measurement <hex>` (optionally `sha256:`-prefixed), or undefined. */
  pinned?: string | undefined;
  /** `form attest --trust-node-measurement`. */
  trustNode?: boolean | undefined;
  /** `verify`: form attest (and status); `secret`: a secret or the disk key is sent when it passes. */
  use: 'verify' | 'secret';
  /** For messages: the instance name, the Formpack id, and what would be sent (`secret DB_PASSWORD`). */
  instance: string;
  formpackId: string;
  sending?: string | undefined;
}

export interface ExpectedSource {
  from: ExpectedFrom;
  /** The expectation does not come from the node being attested. */
  verified: boolean;
  /** Whether a passing attestation counts (exit 0; secrets may follow). */
  counts: boolean;
  /** One line for the output. */
  label: string;
}

export const UNVERIFIED_LABEL = 'measurement from the node (unverified): the node could lie';

/** What to do instead of trusting the node's measurement. */
export const pinMeasurementHint = (formpackId: string): string =>
  `Build it on this machine (\`form pack build --local\`), or pin the measurement: on the machine that built it run ` +
  `\`form pack inspect ${formpackId.slice(0, 12)} --local --measurement\` and pass its sha256 with --measurement <hex>.`;

/** Parse `--measurement`: 64 hex digits, optionally prefixed `sha256:`. */
export function parsePinnedMeasurement(s: string): string {
  const m = /^(?:sha256:)?([0-9a-fA-F]{64})$/.exec(s.trim());
  if (!m) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot use --measurement ${JSON.stringify(s)}: it is not a sha256 (64 hex digits)`,
      {
        hint: 'Copy the last line of `form pack inspect <id> --local --measurement` (sha256:<hex>).',
      },
    );
  }
  return (m[1] as string).toLowerCase();
}

/** Decide where the expected measurement comes from (throws the refusal as a FormError). Pure. */
export function expectedMeasurementSource(i: ExpectedSourceInput): ExpectedSource {
  if (i.pinned !== undefined) {
    const pin = parsePinnedMeasurement(i.pinned);
    if (!i.digests.includes(pin)) {
      throw new FormError(
        i.use === 'secret' ? 'SECRET_REFUSED' : 'ATTEST_FAILED',
        `Cannot ${i.use === 'secret' ? `send ${i.sending ?? 'the secret'} to` : 'attest'} ${i.instance}: the ${i.manifest === 'local build' ? 'local build' : "node's manifest"} of Formpack ${i.formpackId.slice(0, 12)} measures sha256:${i.digests[0] ?? '?'}, which is not the measurement you pinned (sha256:${pin})`,
        {
          hint:
            'The instance does not run the Formpack you pinned, or the pin is for another build: compare with ' +
            `\`form pack inspect ${i.formpackId.slice(0, 12)} --local --measurement\` where it was built, or ship your build again.`,
        },
      );
    }
    return {
      from: 'pinned measurement',
      verified: true,
      counts: true,
      label: `from the pinned measurement sha256:${pin}`,
    };
  }
  if (i.manifest === 'local build') {
    return { from: 'local build', verified: true, counts: true, label: 'from the local build' };
  }
  if (i.use === 'secret') {
    throw new FormError(
      'SECRET_REFUSED',
      `Cannot send ${i.sending ?? 'the secret'} to ${i.instance}: there is no local build of Formpack ${i.formpackId.slice(0, 12)} here, ` +
        'so the expected measurement would come from the node itself, and a node that lies would pass its own check',
      { hint: pinMeasurementHint(i.formpackId) },
    );
  }
  return i.trustNode
    ? {
        from: 'node manifest',
        verified: false,
        counts: true,
        label: `${UNVERIFIED_LABEL} (accepted: --trust-node-measurement)`,
      }
    : { from: 'node manifest', verified: false, counts: false, label: UNVERIFIED_LABEL };
}
