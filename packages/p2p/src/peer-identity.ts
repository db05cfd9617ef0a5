import { privateKeyFromRaw, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id';

/**
 * The node's libp2p identity is its Formation key: the same secp256k1 private key bytes become a
 * libp2p secp256k1 key, so the peer ID is a pure function of the node key and anyone holding a
 * node's public key (from state) can tell which peer ID belongs to it.
 *
 * @example libp2pKeyOf(key).type // 'secp256k1'
 */
export function libp2pKeyOf(key: { privateKey: Uint8Array }): PrivateKey {
  if (key.privateKey.length !== 32) throw new Error('Cannot derive libp2p key: expected a 32-byte secp256k1 key');
  return privateKeyFromRaw(key.privateKey);
}

/** The libp2p peer ID of a Formation key pair. */
export function peerIdOfKey(key: { privateKey: Uint8Array }): PeerId {
  return peerIdFromPrivateKey(libp2pKeyOf(key));
}

/** The libp2p peer ID of a Formation public key (33-byte compressed secp256k1, hex). */
export function peerIdOfPublicKey(publicKeyHex: string): PeerId {
  const hex = publicKeyHex.startsWith('0x') ? publicKeyHex.slice(2) : publicKeyHex;
  return peerIdFromPublicKey(publicKeyFromRaw(Buffer.from(hex, 'hex')));
}
