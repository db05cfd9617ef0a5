import { type KeyPair, randomHex } from '@formation/identity';
import { FormError } from '@formation/interface';
import { ApiClient } from '@formation/service';
import type { MeasurementInputs } from './measurement.ts';
import { type SignedReport, type Verdict, verifyReport } from './report.ts';
import { type SealedSecret, sealSecret } from './seal.ts';

/** One replica to attest: where its node answers and who it must be. */
export interface ReplicaTarget {
  /** Base URL of the node API that serves /attest (the VMM API). */
  url: string;
  /** The node's public key, from state (the replica's node id). */
  nodePublicKey: string;
  /** VM name (or id) on that node. */
  vm: string;
}

export interface ReplicaResult {
  target: ReplicaTarget;
  verdict: Verdict;
  report: SignedReport | null;
  /** Wall time of fetch + verify (ms). */
  ms: number;
}

/** Fetch a report for one replica with a fresh nonce and verify it. Errors become a failed verdict. */
export async function attestReplica(
  key: KeyPair,
  target: ReplicaTarget,
  expected: MeasurementInputs,
  opts: { timeoutMs?: number; nonce?: string } = {},
): Promise<ReplicaResult> {
  const t0 = performance.now();
  const nonce = opts.nonce ?? randomHex(32);
  let report: SignedReport | null = null;
  let verdict: Verdict;
  try {
    report = await new ApiClient(target.url, key, opts.timeoutMs ?? 60_000, target.nodePublicKey).request<SignedReport>(
      'POST',
      `/attest/vms/${encodeURIComponent(target.vm)}/report`,
      { nonce },
    );
    verdict = verifyReport(report, { nodePublicKey: target.nodePublicKey, nonce, expected, vmName: target.vm });
  } catch (err) {
    const raw = (err as Error).message;
    const msg = /No route POST \/attest/.test(raw)
      ? `the node does not serve attestation (its formationd has no @formation/attest routes): ${raw}`
      : raw;
    verdict = { ok: false, checks: [{ name: 'fetch', ok: false, detail: msg }], reason: `fetch: ${msg}` };
  }
  return { target, verdict, report, ms: performance.now() - t0 };
}

/**
 * Seal `value` to the attested guest key of `r` and deliver it through its node. Refused (nothing
 * sent) unless the replica's attestation passed and its report carries a guest key.
 */
export async function putSecret(
  key: KeyPair,
  r: ReplicaResult,
  name: string,
  value: Uint8Array,
): Promise<{ vm: string; path: string; output?: string | undefined }> {
  if (!r.verdict.ok || !r.report) {
    throw new FormError(
      'SECRET_REFUSED',
      `Cannot send secret ${name} to ${r.target.vm}: attestation failed (${r.verdict.reason})`,
    );
  }
  const guestKey = r.report.report.guestKey;
  if (!guestKey) {
    throw new FormError(
      'SECRET_REFUSED',
      `Cannot send secret ${name} to ${r.target.vm}: its report has no guest key (${r.report.report.guestKeyError ?? 'unknown'})`,
      { hint: 'The Formpack must carry /usr/sbin/form-attest and openssl: rebuild it with this Formation version.' },
    );
  }
  const sealed: SealedSecret = sealSecret(guestKey, name, value);
  return new ApiClient(r.target.url, key, 240_000, r.target.nodePublicKey).request(
    'POST',
    `/attest/vms/${encodeURIComponent(r.report.report.vmId)}/secrets`,
    {
      name,
      recipient: guestKey,
      sealed,
    },
  );
}
