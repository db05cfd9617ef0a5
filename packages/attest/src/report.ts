import { addressOf, sign, verify } from '@formation/identity';
import {
  type MeasurementInputs,
  measurementDigest,
  NEUTRAL_INSTANCE_PARAMS,
  sha256Text,
  splitCmdline,
} from './measurement.ts';
import type { ProviderName } from './providers.ts';
import type { GuestTls } from './tls.ts';

export const REPORT_VERSION = 'formation-attest-v1';

/** What a node signs for one VM (see README "Report"). */
export interface AttestationReport {
  version: typeof REPORT_VERSION;
  provider: ProviderName;
  /** The signing node's public key (hex, compressed secp256k1). */
  node: string;
  vmId: string;
  vmName: string;
  /** The verifier's nonce, echoed. */
  nonce: string;
  issuedAt: string;
  /** Formpack the VM was created from (null for plain images). */
  formpackId: string | null;
  measurement: {
    inputs: MeasurementInputs;
    digest: string;
    /** The full kernel command line QEMU was started with (Formpack part + instance part). */
    cmdline: string;
  };
  /** The guest's own X25519 public key (hex), read through the guest agent; null when unknown. */
  guestKey: string | null;
  guestKeyError: string | null;
  /**
   * The guest's HTTPS (Formfile `HTTPS`): the names and the SHA-256 of its certificate's public key,
   * read through the agent (`form-tls status`); absent when the image does not serve HTTPS itself.
   */
  tls?: GuestTls | undefined;
  /** Hardware evidence (sev-snp / tdx); null for `software`. */
  hardware: unknown;
}

export interface SignedReport {
  report: AttestationReport;
  /** secp256k1 signature by `report.node` over `reportMessage(report)`. */
  signature: string;
}

/** Deterministic JSON: object keys sorted, no spaces. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

export function reportMessage(r: AttestationReport): string {
  return `FORM-ATTEST-V1\n${canonicalJson(r)}`;
}

export function signReport(privateKey: Uint8Array, r: AttestationReport): SignedReport {
  return { report: r, signature: sign(privateKey, reportMessage(r)) };
}

/** One line of a verdict. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface Verdict {
  ok: boolean;
  checks: Check[];
  /** The failed checks' details, joined (empty when ok). */
  reason: string;
}

export interface VerifyExpectations {
  /** Public key of the node the instance is placed on (from state). */
  nodePublicKey: string;
  /** The nonce this verifier sent. */
  nonce: string;
  /** Expected Formpack-part measurement (from the Formpack manifest). */
  expected: MeasurementInputs;
  /** The VM this replica is (its name); optional. */
  vmName?: string | undefined;
  /** Reports older than this are refused (default 5 min). */
  maxAgeMs?: number | undefined;
  now?: number | undefined;
}

/** Check a signed report against what the verifier expects. Never throws. */
export function verifyReport(s: SignedReport, e: VerifyExpectations): Verdict {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string): void => {
    checks.push({ name, ok, detail });
  };
  const r = s?.report;
  if (!r || typeof r !== 'object' || !r.measurement?.inputs) {
    add('format', false, 'the answer is not an attestation report');
    return finish(checks);
  }
  add('format', r.version === REPORT_VERSION, `report version ${r.version}`);
  const sigOk = typeof s.signature === 'string' && verify(r.node, reportMessage(r), s.signature);
  add(
    'signature',
    sigOk,
    sigOk ? `signed by node ${short(r.node)}` : 'the signature does not match the report and its node key',
  );
  const nodeOk = norm(r.node) === norm(e.nodePublicKey);
  add(
    'node',
    nodeOk,
    nodeOk
      ? `node key is the replica's node (${addressOf(e.nodePublicKey)})`
      : `signed by ${safeAddress(r.node)}, but the replica is on node ${safeAddress(e.nodePublicKey)}`,
  );
  const nonceOk = r.nonce === e.nonce;
  add(
    'nonce',
    nonceOk,
    nonceOk ? 'fresh (echoes our nonce)' : `stale or replayed: nonce ${short(r.nonce)} is not ours (${short(e.nonce)})`,
  );
  const age = (e.now ?? Date.now()) - Date.parse(r.issuedAt);
  const maxAge = e.maxAgeMs ?? 5 * 60_000;
  add(
    'time',
    Number.isFinite(age) && age <= maxAge && age >= -maxAge,
    `issued ${Number.isFinite(age) ? `${Math.round(age / 1000)} s ago` : 'at an unreadable time'}`,
  );
  if (e.vmName) add('vm', r.vmName === e.vmName, `VM ${r.vmName}${r.vmName === e.vmName ? '' : ` (want ${e.vmName})`}`);
  const got = r.measurement.inputs;
  const want = e.expected;
  const part = (name: keyof MeasurementInputs, label: string): void => {
    const ok = got[name] === want[name];
    add(
      `measurement.${name}`,
      ok,
      ok ? `${label} matches` : `${label} differs: node booted ${fmt(got[name])}, Formpack has ${fmt(want[name])}`,
    );
  };
  part('kernel', 'kernel');
  part('initramfs', 'initramfs');
  part('cmdline', 'command line (Formpack part)');
  part('disk', 'base disk');
  part('vcpu', 'vCPU');
  part('memMiB', 'memory');
  const digestOk = measurementDigest(got) === r.measurement.digest && r.measurement.digest === measurementDigest(want);
  add('measurement', digestOk, `digest ${short(r.measurement.digest)}${digestOk ? '' : ' does not match'}`);
  // The full command line must be the Formpack part plus allowed instance parameters for this VM.
  const split = splitCmdline(r.measurement.cmdline ?? '');
  if ('error' in split) add('cmdline.instance', false, split.error);
  else {
    const fpOk = sha256Text(split.formpack) === got.cmdline;
    const keys = Object.keys(split.params);
    // A snapshot-capable boot has only vm_wait=identity; anything else with vm_wait is refused.
    const neutral = keys.length === 1 && `vm_wait=${split.params.vm_wait}` === NEUTRAL_INSTANCE_PARAMS;
    const idOk = neutral || (split.params.vm_id === r.vmId && split.params.vm_wait === undefined);
    add(
      'cmdline.instance',
      fpOk && idOk,
      fpOk && idOk
        ? neutral
          ? 'instance-neutral command line (vm_wait=identity: identity given after boot, bound by the report VM id and guest key)'
          : `instance params ${keys.join(' ')}`
        : !fpOk
          ? 'the full command line does not start with the measured Formpack part'
          : split.params.vm_wait !== undefined
            ? `vm_wait=${split.params.vm_wait} with other instance params is not a neutral command line`
            : `vm_id=${split.params.vm_id ?? '-'} is not the attested VM ${r.vmId}`,
    );
  }
  add(
    'guest-key',
    typeof r.guestKey === 'string' && /^[0-9a-f]{64}$/.test(r.guestKey),
    r.guestKey ? `guest X25519 key ${short(r.guestKey)}` : `no guest key (${r.guestKeyError ?? 'unknown'})`,
  );
  if (r.tls) {
    const k = r.tls.spkiSha256;
    add(
      'tls',
      typeof k === 'string' && /^[0-9a-f]{64}$/.test(k),
      k
        ? `HTTPS key sha256:${short(k)} for ${r.tls.names.join(' ')} (check the served certificate with verifyServedCertificate)`
        : `HTTPS ${r.tls.state}, no certificate yet${r.tls.error ? ` (${r.tls.error})` : ''}`,
    );
  }
  return finish(checks);
}

/** Checks that must pass for the report to count (guest-key is needed only for secrets, tls only for HTTPS). */
function finish(checks: Check[]): Verdict {
  const bad = checks.filter((c) => !c.ok && c.name !== 'guest-key' && c.name !== 'tls');
  return { ok: bad.length === 0, checks, reason: bad.map((c) => `${c.name}: ${c.detail}`).join('; ') };
}

function norm(k: string): string {
  return String(k ?? '')
    .toLowerCase()
    .replace(/^0x/, '');
}

function short(s: string | null | undefined): string {
  return s ? (s.length > 16 ? `${s.slice(0, 12)}…` : s) : '-';
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? `sha256:${short(v)}` : String(v);
}

function safeAddress(pub: string): string {
  try {
    return addressOf(pub);
  } catch {
    return short(pub);
  }
}
