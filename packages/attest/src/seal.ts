import { createCipheriv, createHmac, hkdfSync, pbkdf2Sync, randomBytes } from 'node:crypto';
import { FormError } from '@formation/interface';
import { x25519 } from '@noble/curves/ed25519.js';

/**
 * Sealing a secret to a guest's attested X25519 key (ECIES): a fresh ephemeral key, X25519 shared
 * secret, HKDF-SHA256 (info `formation-secret-v2`) → 32 bytes `ek` + 32-byte HMAC-SHA256 key, AES-256-CTR
 * under PBKDF2-HMAC-SHA256(hex(ek), no salt, 1 iteration), encrypt-then-MAC over
 * `formation-secret-v2\nNAME\nIV\nCT` (binds the name). The guest opens it with
 * `/usr/sbin/form-attest secret-put` using only sh and openssl, with no key on any command line (see
 * packages/guest/files/form-attest; the PBKDF2 step is what lets `openssl enc` read the AES key from a
 * file). v1 took ek as the AES key and is not accepted by guests built since.
 */
export interface SealedSecret {
  /** base64 SPKI DER of the ephemeral public key (what `openssl pkeyutl -peerkey` reads). */
  epk: string;
  /** 16-byte IV, hex. */
  iv: string;
  /** base64 ciphertext. */
  ct: string;
  /** hex HMAC-SHA256. */
  mac: string;
}

export const SECRET_INFO = 'formation-secret-v2';
export const SECRET_NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const X25519_SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export function sealSecret(guestKeyHex: string, name: string, plaintext: Uint8Array): SealedSecret {
  if (!/^[0-9a-f]{64}$/.test(guestKeyHex)) throw new FormError('SECRET_REFUSED', 'Cannot seal: bad guest key');
  if (!SECRET_NAME_RE.test(name)) {
    throw new FormError('BAD_REQUEST', `Cannot store secret ${JSON.stringify(name)}: use letters, digits, . _ -`);
  }
  const eph = x25519.utils.randomSecretKey();
  const ephPub = x25519.getPublicKey(eph);
  const shared = x25519.getSharedSecret(eph, Buffer.from(guestKeyHex, 'hex'));
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), SECRET_INFO, 64));
  const iv = randomBytes(16);
  const aesKey = pbkdf2Sync(okm.subarray(0, 32).toString('hex'), Buffer.alloc(0), 1, 32, 'sha256');
  const c = createCipheriv('aes-256-ctr', aesKey, iv);
  const ct = Buffer.concat([c.update(plaintext), c.final()]).toString('base64');
  const ivHex = iv.toString('hex');
  const mac = createHmac('sha256', okm.subarray(32, 64))
    .update(`${SECRET_INFO}\n${name}\n${ivHex}\n${ct}`)
    .digest('hex');
  return { epk: Buffer.concat([X25519_SPKI_PREFIX, ephPub]).toString('base64'), iv: ivHex, ct, mac };
}
