import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import {
  createDataItem,
  deepHash,
  deserializeTags,
  parseDataItem,
  serializeTags,
  verifyDataItem,
} from '../src/ans104.ts';

const key = generateKeyPair();
const target = Buffer.alloc(32, 7).toString('base64url');
const tags = [
  { name: 'Data-Protocol', value: 'ao' },
  { name: 'Type', value: 'Message' },
  { name: 'Action', value: 'Inc' },
  { name: 'Ünïcode', value: 'ß'.repeat(100) },
];

describe('ANS-104 data items (Ethereum signatures)', () => {
  it('round-trips: the signer is the owner, the id is sha256 of the signature', () => {
    const buf = createDataItem(key, { target, tags, data: 'hello' });
    const item = verifyDataItem(buf);
    assert.equal(item.ownerAddress, key.address);
    assert.equal(item.target, target);
    assert.equal(item.anchor, '');
    assert.deepEqual(item.tags, tags);
    assert.equal(item.data.toString(), 'hello');
    assert.equal(item.signature.length, 65);
    assert.ok([27, 28].includes(item.signature[64] as number), 'Ethereum v byte');
    assert.equal(item.id, createHash('sha256').update(item.signature).digest('base64url'));
    assert.match(item.id, /^[A-Za-z0-9_-]{43}$/);
    const noTarget = verifyDataItem(createDataItem(key, { tags: [], data: '' }));
    assert.equal(noTarget.target, '');
    assert.deepEqual(noTarget.tags, []);
  });

  it('encodes tags as Avro (zig-zag varints, one block, 0 terminator)', () => {
    const raw = serializeTags([{ name: 'a', value: 'bc' }]);
    assert.deepEqual([...raw], [2, 2, 0x61, 4, 0x62, 0x63, 0]);
    assert.deepEqual(serializeTags([]).length, 0);
    const many = Array.from({ length: 100 }, (_, i) => ({ name: `n${i}`, value: 'v'.repeat(i * 3) }));
    assert.deepEqual(deserializeTags(serializeTags(many)), many);
    // a negative block count carries a byte size (Avro allows it; decoders must accept it)
    assert.deepEqual(deserializeTags(Buffer.from([1, 12, 2, 0x61, 4, 0x62, 0x63, 0])), [{ name: 'a', value: 'bc' }]);
  });

  it('deep hash distinguishes blobs and lists', () => {
    assert.equal(deepHash(Buffer.from('x')).length, 48);
    assert.notDeepEqual(deepHash(Buffer.from('ab')), deepHash([Buffer.from('a'), Buffer.from('b')]));
    assert.notDeepEqual(deepHash([Buffer.from('ab')]), deepHash([Buffer.from('a'), Buffer.from('b')]));
  });

  it('refuses altered items: data, tags, target, owner', () => {
    const buf = createDataItem(key, { target, tags, data: 'hello' });
    const flip = (at: number) => {
      const b = Buffer.from(buf);
      b[at] = (b[at] as number) ^ 1;
      return b;
    };
    for (const at of [buf.length - 1, buf.length - 10, 2 + 65 + 65 + 5, 2 + 65 + 10]) {
      assert.throws(
        () => verifyDataItem(flip(at)),
        (e: Error & { code?: string }) => e.code === 'AUTH_BAD_SIGNATURE' || e.code === 'BAD_REQUEST',
      );
    }
    const other = createDataItem(generateKeyPair(), { target, tags, data: 'hello' });
    const spliced = Buffer.concat([buf.subarray(0, 67), other.subarray(67, 132), buf.subarray(132)]);
    assert.throws(
      () => verifyDataItem(spliced),
      (e: Error & { code?: string }) => e.code === 'AUTH_BAD_SIGNATURE',
    );
  });

  it('exploit: a tag count set to 0 cannot strip the signed tags (the count is not signed, the tag bytes are)', () => {
    // Found by the signer property test: with the count 0 the tags were never decoded, so an item
    // stripped of its Action still verified under the original id (sha256 of the same signature).
    const buf = createDataItem(key, { target, tags, data: 'hello' });
    const at = 2 + 65 + 65 + 1 + 32 + 1; // signature type, signature, owner, target flag + target, no anchor
    assert.equal(buf.readBigUInt64LE(at), BigInt(tags.length), 'the tag count is where this test edits it');
    const stripped = Buffer.from(buf);
    stripped.writeBigUInt64LE(0n, at);
    assert.throws(
      () => verifyDataItem(stripped),
      (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && /0 tags but \d+ tag bytes/.test(e.message),
    );
    assert.deepEqual(verifyDataItem(buf).tags, tags, 'the untouched item still verifies with its tags');
  });

  it('refuses malformed and unsupported items with a clear error', () => {
    const buf = createDataItem(key, { target, tags, data: 'hello' });
    assert.throws(() => parseDataItem(buf.subarray(0, 50)), /too short/);
    assert.throws(() => parseDataItem(buf.subarray(0, 200)), /truncated/);
    // an Arweave (type 1) frame whose owner is no 4096-bit modulus; real Arweave items: ans104-signers.test.ts
    const arweave = Buffer.alloc(2000);
    arweave.writeUInt16LE(1);
    assert.throws(() => verifyDataItem(arweave), /owner is not a 4096-bit RSA modulus/);
    const unknown = Buffer.from(buf);
    unknown.writeUInt16LE(99);
    assert.throws(() => parseDataItem(unknown), /unknown signature type 99/);
  });
});
