import { type Address, FormError } from '@formation/interface';
import { x25519 } from '@noble/curves/ed25519.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js';

/** A secp256k1 key pair. `publicKey` is the 33-byte compressed point, hex. */
export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: string;
  address: Address;
}

/** Make a new random secp256k1 key pair. */
export function generateKeyPair(): KeyPair {
  return keyPairFromPrivate(secp256k1.utils.randomSecretKey());
}

/** Rebuild a key pair from its 32-byte private key (bytes or hex, `0x` allowed). */
export function keyPairFromPrivate(privateKey: Uint8Array | string): KeyPair {
  const sk = typeof privateKey === 'string' ? parseHex(privateKey, 32, 'private key') : privateKey;
  if (!secp256k1.utils.isValidSecretKey(sk)) {
    throw new FormError('KEY_INVALID', 'Cannot load key: not a valid secp256k1 private key', {
      hint: 'Create a new key with `form kit init --force`.',
    });
  }
  const publicKey = bytesToHex(secp256k1.getPublicKey(sk, true));
  return { privateKey: sk, publicKey, address: addressOf(publicKey) };
}

/**
 * The account address of a public key: `0x` + the last 20 bytes of keccak256 of the uncompressed
 * point (without its 0x04 prefix), as Ethereum and the original Formation do.
 *
 * @example addressOf('02…') // '0x1234…'
 */
export function addressOf(publicKeyHex: string): Address {
  const point = secp256k1.Point.fromHex(normalizeHex(publicKeyHex));
  const uncompressed = point.toBytes(false);
  return `0x${bytesToHex(keccak_256(uncompressed.subarray(1)).subarray(12))}`;
}

/** True when `s` looks like an address (`0x` + 40 hex). */
export function isAddress(s: string): boolean {
  return /^0x[0-9a-f]{40}$/.test(s);
}

/** Sign `message` (sha256-prehashed); returns the 64-byte compact signature, hex. */
export function sign(privateKey: Uint8Array, message: Uint8Array | string): string {
  return bytesToHex(secp256k1.sign(toBytes(message), privateKey, { prehash: true }));
}

/** Verify a compact hex signature over `message` by `publicKeyHex`. Never throws; false on any malformed input. */
export function verify(publicKeyHex: string, message: Uint8Array | string, signatureHex: string): boolean {
  try {
    if (!/^[0-9a-fA-F]{128}$/.test(signatureHex)) return false;
    return secp256k1.verify(hexToBytes(signatureHex), toBytes(message), hexToBytes(normalizeHex(publicKeyHex)), {
      prehash: true,
    });
  } catch {
    return false;
  }
}

/** sha256 of bytes or a UTF-8 string, hex. */
export function sha256Hex(data: Uint8Array | string): string {
  return bytesToHex(sha256(toBytes(data)));
}

/** A WireGuard (x25519) key pair, base64 as `wg` prints them. */
export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

/** Make a WireGuard key pair (same bytes `wg genkey | wg pubkey` would give). */
export function generateWireGuardKeyPair(): WireGuardKeyPair {
  const sk = x25519.utils.randomSecretKey();
  return wireGuardKeyPairFromPrivate(Buffer.from(sk).toString('base64'));
}

/** Derive the WireGuard public key from a base64 private key. */
export function wireGuardKeyPairFromPrivate(privateKeyB64: string): WireGuardKeyPair {
  const sk = Buffer.from(privateKeyB64, 'base64');
  if (sk.length !== 32) throw new FormError('KEY_INVALID', 'Cannot load WireGuard key: it must be 32 bytes, base64');
  // Clamp as wg does, so the stored private key equals what `wg` would print.
  sk[0] = (sk[0] as number) & 248;
  sk[31] = ((sk[31] as number) & 127) | 64;
  return {
    privateKey: sk.toString('base64'),
    publicKey: Buffer.from(x25519.getPublicKey(sk)).toString('base64'),
  };
}

/** Random bytes as hex (nonces). */
export function randomHex(bytes = 16): string {
  return bytesToHex(randomBytes(bytes));
}

function toBytes(message: Uint8Array | string): Uint8Array {
  return typeof message === 'string' ? new TextEncoder().encode(message) : message;
}

function normalizeHex(hex: string): string {
  return hex.startsWith('0x') ? hex.slice(2) : hex;
}

function parseHex(hex: string, length: number, what: string): Uint8Array {
  const h = normalizeHex(hex.trim());
  if (!new RegExp(`^[0-9a-fA-F]{${length * 2}}$`).test(h)) {
    throw new FormError('KEY_INVALID', `Cannot load ${what}: expected ${length} bytes of hex`);
  }
  return hexToBytes(h);
}
