import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { type GossipSub, gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { createLibp2p, type Libp2p } from 'libp2p';
import { SCORE_THRESHOLDS, scoreParams } from './limits.ts';
import { libp2pKeyOf } from './peer-identity.ts';

export const DEFAULT_P2P_PORT = 3005;

/** The libp2p host a P2P node runs on: the rest of the package only needs its gossipsub service. */
export type P2PHost = Libp2p<{ pubsub: GossipSub }>;

export interface HostOptions {
  key: { privateKey: Uint8Array };
  /** Listen multiaddrs; default `/ip4/127.0.0.1/tcp/3005`. */
  listen?: string[];
  /** Largest op gossiped, bytes: a gossip frame may carry this plus protobuf overhead. */
  maxOpBytes: number;
  /** Every gossip topic the node uses (each gets the same peer-scoring parameters). */
  topics: string[];
}

/**
 * Gossip message identity is the message bytes: ops are signed by their authors, so the same op
 * relayed by two peers is one message and re-publishing it is a no-op.
 *
 * @example gossipMessageId(bytes).length // 32
 */
export function gossipMessageId(data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest();
}

/** Start a TCP + Noise + Yamux + identify + ping + gossipsub host keyed by the node's Formation key. */
export async function createHost(opts: HostOptions): Promise<P2PHost> {
  return createLibp2p({
    privateKey: libp2pKeyOf(opts.key),
    addresses: { listen: opts.listen ?? [`/ip4/127.0.0.1/tcp/${DEFAULT_P2P_PORT}`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictNoSign',
        msgIdFn: (msg) => gossipMessageId(msg.data),
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        maxInboundDataLength: opts.maxOpBytes + 4096,
        // Score peers on what they send: a rejected op costs 10 × count²; under −80 a peer is graylisted
        // (its messages dropped before validation). See limits.ts and the README.
        scoreParams: scoreParams(opts.topics),
        scoreThresholds: SCORE_THRESHOLDS,
      }),
    },
  });
}
