/** A hex-encoded sha256 digest (64 lowercase hex chars). */
export type Sha256Hex = string;

/** An account address: `0x` + 40 hex chars (keccak256 of the public key, Ethereum style). */
export type Address = string;

/** Resources a Formfile asks for and a node offers. */
export interface Resources {
  vcpu: number;
  /** MiB */
  memMiB: number;
  /** GiB */
  diskGiB: number;
}

/** Deployment status words exactly as seed 000 uses them. */
export type DeployStatus = 'PENDING' | 'SUCCESS' | 'FAILURE';

/** True when `s` is a 64-char lowercase hex string. */
export function isSha256Hex(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
