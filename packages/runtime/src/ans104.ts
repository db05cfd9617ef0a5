import { constants, createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { addressOf, type KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';

/**
 * ANS-104 data items (the binary messages AO clients post to a MU): parse, verify (signature types
 * 1 Arweave, 2 ED25519, 3 Ethereum, 4 Solana, as `@dha-team/arbundles` — what `aoconnect` uses —
 * signs them), create (type 3, what HyMatrix's goar + goether signers produce).
 *
 * Layout: u16le signature type · signature · owner (public key) · target flag [+32] · anchor flag
 * [+32] · u64le tag count · u64le tag bytes · Avro-encoded tags · data. The signature covers the
 * SHA-384 "deep hash" of ["dataitem", "1", type, owner, target, anchor, tag bytes, data]; the item id
 * is base64url(sha256(signature)). Per type, what is signed and how:
 * - 1 Arweave: RSA-PSS, SHA-256, 4096-bit modulus (the owner, e = 65537), any salt length (Node's
 *   arweave-js / aoconnect sign with the maximum, 478 bytes; browser wallets with 32).
 * - 2 ED25519: ed25519 over the deep hash.
 * - 3 Ethereum: secp256k1 over the deep hash as an Ethereum personal message (65-byte r·s·v).
 * - 4 Solana: ed25519 over the deep hash's lowercase hex (arbundles' `HexSolanaSigner`).
 */

export const SIG_ARWEAVE = 1;
export const SIG_ED25519 = 2;
export const SIG_ETHEREUM = 3;
export const SIG_SOLANA = 4;
const SIG_LENGTHS: Record<number, { sig: number; owner: number; name: string }> = {
  1: { sig: 512, owner: 512, name: 'Arweave' },
  2: { sig: 64, owner: 32, name: 'ED25519' },
  3: { sig: 65, owner: 65, name: 'Ethereum' },
  4: { sig: 64, owner: 32, name: 'Solana' },
};

export interface DataItemTag {
  name: string;
  value: string;
}

export interface ParsedDataItem {
  id: string;
  signatureType: number;
  signature: Buffer;
  owner: Buffer;
  /** Signer address: `0x…` (lowercase) for Ethereum items, else base64url(sha256(owner)) as AO and Arweave name it. */
  ownerAddress: string;
  /** `Arweave`, `ED25519`, `Ethereum` or `Solana`. */
  signatureName: string;
  target: string;
  anchor: string;
  tags: DataItemTag[];
  rawTags: Buffer;
  data: Buffer;
}

const sha384 = (b: Uint8Array) => createHash('sha384').update(b).digest();

/** Arweave's deep hash (SHA-384) of a blob or a nested list of blobs. */
export function deepHash(data: Uint8Array | Uint8Array[]): Buffer {
  if (Array.isArray(data)) {
    let acc = sha384(Buffer.from(`list${data.length}`));
    for (const chunk of data) acc = sha384(Buffer.concat([acc, deepHash(chunk)]));
    return acc;
  }
  return sha384(Buffer.concat([sha384(Buffer.from(`blob${data.byteLength}`)), sha384(data)]));
}

function ethMessageHash(message: Uint8Array): Uint8Array {
  return keccak_256(Buffer.concat([Buffer.from(`\x19Ethereum Signed Message:\n${message.byteLength}`), message]));
}

// Avro: zig-zag varint longs; an array is blocks of (count, items), ended by a 0 count
function writeLong(out: number[], n: number): void {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  do {
    let b = z % 128;
    z = Math.floor(z / 128);
    if (z > 0) b |= 0x80;
    out.push(b);
  } while (z > 0);
}

export function serializeTags(tags: DataItemTag[]): Buffer {
  if (tags.length === 0) return Buffer.alloc(0);
  const out: number[] = [];
  writeLong(out, tags.length);
  for (const t of tags)
    for (const s of [t.name, t.value]) {
      const b = Buffer.from(s);
      writeLong(out, b.length);
      out.push(...b);
    }
  writeLong(out, 0);
  return Buffer.from(out);
}

export function deserializeTags(buf: Buffer): DataItemTag[] {
  let pos = 0;
  const readLong = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (pos >= buf.length) throw new Error('tags end early');
      const b = buf[pos++] as number;
      n += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) break;
      if (mul > 2 ** 56) throw new Error('tag length overflows');
    }
    return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  };
  const readString = (): string => {
    const len = readLong();
    if (len < 0 || pos + len > buf.length) throw new Error('tag string out of bounds');
    const s = buf.subarray(pos, pos + len).toString('utf8');
    pos += len;
    return s;
  };
  const tags: DataItemTag[] = [];
  for (;;) {
    let count = readLong();
    if (count === 0) break;
    if (count < 0) {
      count = -count;
      readLong(); // block size in bytes
    }
    for (let i = 0; i < count; i++) tags.push({ name: readString(), value: readString() });
  }
  return tags;
}

function bad(message: string): FormError {
  return new FormError('BAD_REQUEST', `Cannot read data item: ${message}`, {
    hint: 'Send an ANS-104 data item (application/octet-stream).',
  });
}

/** Parse the binary layout (no signature check). */
export function parseDataItem(buf: Buffer): ParsedDataItem {
  if (buf.length < 80) throw bad(`${buf.length} bytes is too short`);
  const signatureType = buf.readUInt16LE(0);
  const lens = SIG_LENGTHS[signatureType];
  if (!lens)
    throw bad(
      `unknown signature type ${signatureType} (supported: ${Object.entries(SIG_LENGTHS)
        .map(([t, l]) => `${t} ${l.name}`)
        .join(', ')})`,
    );
  let pos = 2;
  const take = (n: number, what: string): Buffer => {
    if (pos + n > buf.length) throw bad(`truncated in ${what}`);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const signature = take(lens.sig, 'signature');
  const owner = take(lens.owner, 'owner');
  const optional32 = (what: string): Buffer => {
    const flag = take(1, what)[0];
    if (flag === 0) return Buffer.alloc(0);
    if (flag !== 1) throw bad(`bad ${what} flag ${flag}`);
    return take(32, what);
  };
  const target = optional32('target');
  const anchor = optional32('anchor');
  const tagCount = Number(take(8, 'tag count').readBigUInt64LE());
  const tagBytes = Number(take(8, 'tag size').readBigUInt64LE());
  if (tagBytes > 128 * 4096) throw bad(`${tagBytes} tag bytes is too many`);
  const rawTags = take(tagBytes, 'tags');
  // The count is not covered by the signature (the tag bytes are): a 0 in front of signed tag bytes
  // would drop the tags from what we act on while the item, and its id, still verify.
  if (tagCount === 0 && tagBytes !== 0)
    throw bad(`header says 0 tags but ${tagBytes} tag bytes follow; a 0 count must have no tag bytes`);
  let tags: DataItemTag[] = [];
  if (tagCount > 0) {
    try {
      tags = deserializeTags(rawTags);
    } catch (err) {
      throw bad(`tags are not valid Avro (${(err as Error).message})`);
    }
    if (tags.length !== tagCount) throw bad(`header says ${tagCount} tags, found ${tags.length}`);
  }
  const data = buf.subarray(pos);
  return {
    id: createHash('sha256').update(signature).digest('base64url'),
    signatureType,
    signatureName: lens.name,
    ownerAddress: ownerToAddress(signatureType, owner),
    signature,
    owner,
    target: target.length ? target.toString('base64url') : '',
    anchor: anchor.length ? anchor.toString('base64url') : '',
    tags,
    rawTags,
    data,
  };
}

function signatureData(
  signatureType: number,
  owner: Uint8Array,
  target: Uint8Array,
  anchor: Uint8Array,
  rawTags: Uint8Array,
  data: Uint8Array,
): Buffer {
  return deepHash([
    Buffer.from('dataitem'),
    Buffer.from('1'),
    Buffer.from(String(signatureType)),
    owner,
    target,
    anchor,
    rawTags,
    data,
  ]);
}

/**
 * The address an owner (public key) signs as. Ethereum: the lowercase `0x…` address (keccak of the
 * public key, as HyMatrix names signers). Every other type: base64url(sha256(owner)) — for an Arweave
 * owner (its 512-byte RSA modulus) that is the wallet address; AO's scheduler names every signer this way.
 */
export function ownerToAddress(signatureType: number, owner: Uint8Array): string {
  if (signatureType === SIG_ETHEREUM) {
    try {
      return addressOf(Buffer.from(owner).toString('hex'));
    } catch {
      throw bad('owner is not a secp256k1 public key');
    }
  }
  return createHash('sha256').update(owner).digest('base64url');
}

/** secp256k1's group order. */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

function verifyEthereum(item: ParsedDataItem, message: Buffer): boolean {
  const hash = ethMessageHash(message);
  // one signature per signed message and key: v is 27/28 and s is in the lower half (what ethers,
  // go-ethereum and noble produce). Otherwise anyone could re-post an item as (r, n-s, v^1) or with
  // v 0/1 — the same signed message under a new id, which the per-process id check would not catch.
  const v = item.signature[64] as number;
  if (v !== 27 && v !== 28) return false;
  if (BigInt(`0x${item.signature.subarray(32, 64).toString('hex')}`) > SECP256K1_N / 2n) return false;
  const recovery = v - 27;
  const recovered = secp256k1.recoverPublicKey(
    Buffer.concat([Buffer.from([recovery]), item.signature.subarray(0, 64)]),
    hash,
    { prehash: false },
  );
  return addressOf(Buffer.from(recovered).toString('hex')) === item.ownerAddress;
}

function rsaKey(owner: Buffer): KeyObject {
  // a 4096-bit modulus has its top bit set; anything else is a smaller key than Arweave's
  if (((owner[0] as number) & 0x80) === 0) throw bad('owner is not a 4096-bit RSA modulus');
  try {
    return createPublicKey({ key: { kty: 'RSA', n: owner.toString('base64url'), e: 'AQAB' }, format: 'jwk' });
  } catch {
    throw bad('owner is not an RSA public key');
  }
}

function ed25519Key(owner: Buffer): KeyObject {
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: owner.toString('base64url') }, format: 'jwk' });
  } catch {
    throw bad('owner is not an ed25519 public key');
  }
}

function checkSignature(item: ParsedDataItem, message: Buffer): boolean {
  switch (item.signatureType) {
    case SIG_ARWEAVE: {
      const key = rsaKey(item.owner);
      return cryptoVerify(
        'sha256',
        message,
        { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
        item.signature,
      );
    }
    case SIG_ED25519:
      return cryptoVerify(null, message, ed25519Key(item.owner), item.signature);
    case SIG_SOLANA:
      return cryptoVerify(null, Buffer.from(message.toString('hex')), ed25519Key(item.owner), item.signature);
    case SIG_ETHEREUM:
      return verifyEthereum(item, message);
    default:
      return false;
  }
}

/**
 * Parse and verify a data item (signature types 1 Arweave, 2 ED25519, 3 Ethereum, 4 Solana).
 * Throws BAD_REQUEST when it is malformed (or its owner is not a key of its type) and
 * AUTH_BAD_SIGNATURE when the signature does not match the owner.
 */
export function verifyDataItem(buf: Buffer): ParsedDataItem {
  const item = parseDataItem(buf);
  const target = item.target ? Buffer.from(item.target, 'base64url') : Buffer.alloc(0);
  const anchor = item.anchor ? Buffer.from(item.anchor, 'base64url') : Buffer.alloc(0);
  const message = signatureData(item.signatureType, item.owner, target, anchor, item.rawTags, item.data);
  let ok = false;
  try {
    ok = checkSignature(item, message);
  } catch (err) {
    if (err instanceof FormError) throw err;
    ok = false;
  }
  if (!ok)
    throw new FormError(
      'AUTH_BAD_SIGNATURE',
      `Cannot accept data item ${item.id}: its ${item.signatureName} signature does not match its owner`,
    );
  return item;
}

function b64url32(s: string | undefined, what: string): Buffer {
  if (!s) return Buffer.alloc(0);
  const b = Buffer.from(s, 'base64url');
  if (b.length !== 32)
    throw new FormError('BAD_REQUEST', `Cannot create data item: ${what} must be 32 bytes base64url (got ${b.length})`);
  return b;
}

/** Create and sign an Ethereum (type 3) data item. */
export function createDataItem(
  key: KeyPair,
  o: { target?: string; anchor?: string; tags: DataItemTag[]; data: string | Uint8Array },
): Buffer {
  const owner = Buffer.from(secp256k1.getPublicKey(key.privateKey, false));
  const target = b64url32(o.target, 'target');
  const anchor = b64url32(o.anchor, 'anchor');
  const rawTags = serializeTags(o.tags);
  const data = typeof o.data === 'string' ? Buffer.from(o.data) : Buffer.from(o.data);
  const hash = ethMessageHash(signatureData(SIG_ETHEREUM, owner, target, anchor, rawTags, data));
  const rec = secp256k1.sign(hash, key.privateKey, { prehash: false, format: 'recovered' });
  const signature = Buffer.concat([Buffer.from(rec.subarray(1)), Buffer.from([(rec[0] as number) + 27])]);
  const head = Buffer.alloc(2);
  head.writeUInt16LE(SIG_ETHEREUM);
  const counts = Buffer.alloc(16);
  counts.writeBigUInt64LE(BigInt(o.tags.length), 0);
  counts.writeBigUInt64LE(BigInt(rawTags.length), 8);
  return Buffer.concat([
    head,
    signature,
    owner,
    target.length ? Buffer.concat([Buffer.from([1]), target]) : Buffer.from([0]),
    anchor.length ? Buffer.concat([Buffer.from([1]), anchor]) : Buffer.from([0]),
    counts,
    rawTags,
    data,
  ]);
}
