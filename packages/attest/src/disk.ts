import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_CONTRACT } from '@formation/guest';
import type { KeyPair } from '@formation/identity';
import { FormError, formHome } from '@formation/interface';
import { ApiClient } from '@formation/service';
import { putSecret, type ReplicaResult, type ReplicaTarget } from './client.ts';

/**
 * The encrypted data disk of an instance (see README "Encrypted data disk"): every Formpack VM has a
 * second, empty virtio disk (not measured); inside the guest it is LUKS2, opened with a 32-byte key
 * that only the developer holds and that reaches a replica only sealed to its attested guest key.
 */

/** Where the unlocked data disk is mounted inside the guest. */
export const DATA_MOUNT: string = GUEST_CONTRACT.dataMount;

/** What `form-disk status` reports. */
export interface DiskStatus {
  /** `absent`: no data disk (or an image without form-disk); `locked`: not opened since boot. */
  state: 'absent' | 'locked' | 'unlocked' | 'unknown';
  device?: string | undefined;
  /** Whether the disk already carries a LUKS header (`no` = blank, formatted at the first unlock). */
  luks?: 'yes' | 'no' | 'unknown' | undefined;
  mount?: string | undefined;
  /** Why the state is unknown. */
  error?: string | undefined;
}

/** Parse `form-disk status` output (key=value lines). */
export function parseDiskStatus(text: string): DiskStatus {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([a-z]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1] as string, m[2] as string);
  }
  const state = kv.get('state');
  if (state !== 'absent' && state !== 'locked' && state !== 'unlocked') {
    return { state: 'unknown', error: `unexpected form-disk status output: ${text.trim().slice(0, 120)}` };
  }
  const luks = kv.get('luks');
  return {
    state,
    ...(kv.has('device') ? { device: kv.get('device') } : {}),
    ...(luks === 'yes' || luks === 'no' || luks === 'unknown' ? { luks } : {}),
    ...(kv.has('mount') ? { mount: kv.get('mount') } : {}),
  };
}

/** Where the CLI keeps an instance's disk key: `$FORM_HOME/keys/disks/<instance id>.key` (hex, 0600). */
export function diskKeyPath(instanceId: string, home = formHome()): string {
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(instanceId)) {
    throw new FormError('BAD_REQUEST', `Cannot keep a disk key for instance ${JSON.stringify(instanceId)}: bad id`);
  }
  return join(home, 'keys', 'disks', `${instanceId}.key`);
}

/** Read an instance's disk key, or null when this machine never made one. */
export function loadDiskKey(instanceId: string, home = formHome()): Buffer | null {
  const p = diskKeyPath(instanceId, home);
  if (!existsSync(p)) return null;
  const hex = readFileSync(p, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new FormError('KEY_INVALID', `Cannot use the disk key in ${p}: expected 64 hex characters`);
  }
  return Buffer.from(hex, 'hex');
}

/**
 * The instance's disk key: loaded, or made once (32 random bytes) and saved 0600. `created` says which.
 * Losing this file loses the instance's data: the node never sees the key.
 */
export function ensureDiskKey(instanceId: string, home = formHome()): { key: Buffer; path: string; created: boolean } {
  const path = diskKeyPath(instanceId, home);
  const have = loadDiskKey(instanceId, home);
  if (have) return { key: have, path, created: false };
  const key = randomBytes(32);
  mkdirSync(join(home, 'keys', 'disks'), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return { key, path, created: true };
}

/**
 * Seal the disk key to an attested replica and have its guest unlock + mount the data disk. Refused
 * (nothing sent) when the replica's attestation failed (see `putSecret`).
 */
export async function unlockDisk(
  key: KeyPair,
  r: ReplicaResult,
  diskKey: Uint8Array,
): Promise<{ vm: string; output: string }> {
  if (diskKey.length !== 32) throw new FormError('BAD_REQUEST', 'Cannot unlock: the disk key must be 32 bytes');
  const res = await putSecret(key, r, GUEST_CONTRACT.diskKeySecret, diskKey);
  return { vm: res.vm, output: res.output ?? '' };
}

/** Ask a replica's node for the lock state of its data disk (signed; answers come from the guest). */
export async function diskStatus(key: KeyPair, target: ReplicaTarget): Promise<DiskStatus> {
  try {
    return await new ApiClient(target.url, key, 30_000, target.nodePublicKey).request<DiskStatus>(
      'POST',
      `/attest/vms/${encodeURIComponent(target.vm)}/disk`,
      {},
    );
  } catch (err) {
    return { state: 'unknown', error: (err as Error).message };
  }
}

/** One word (and reason) for a replica's attestation, as status tables print it. */
export function attestationSummary(r: Pick<ReplicaResult, 'verdict'>): string {
  return r.verdict.ok ? 'ok' : `FAILED (${r.verdict.reason})`;
}
