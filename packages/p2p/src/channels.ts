import type { Logger } from '@formation/service';
import { TopicValidatorResult } from '@libp2p/gossipsub';
import type { P2PHost } from './host.ts';
import { VALIDATOR_RESULT } from './ops-gossip.ts';
import type { PeerBook } from './peer-book.ts';

export interface GossipChannel {
  topic: string;
  validate(data: Uint8Array, from: string): 'accept' | 'reject' | 'ignore' | Promise<'accept' | 'reject' | 'ignore'>;
  /** Largest message, bytes; default 4 KiB. */
  maxBytes?: number;
}

export const DEFAULT_CHANNEL_MAX_BYTES = 4096;

export interface Channels {
  /** Publish on a configured channel (best effort: dropped when no peer listens yet). */
  broadcast(topic: string, data: Uint8Array): Promise<void>;
}

/**
 * Gossip topics other than the ops (e.g. node presence): each message is rate-limited with the
 * sender's op bucket, size-checked, then judged by the channel's own `validate`.
 */
export function startChannels(deps: {
  pubsub: P2PHost['services']['pubsub'];
  channels: GossipChannel[];
  peers: PeerBook;
  log: Logger;
}): Channels {
  const { pubsub, channels, peers, log } = deps;
  for (const ch of channels) {
    const max = ch.maxBytes ?? DEFAULT_CHANNEL_MAX_BYTES;
    pubsub.topicValidators.set(ch.topic, async (peer, msg) => {
      const p = peers.get(peer.toString());
      if (!p.ops.take()) {
        p.counters.rateLimited++;
        return TopicValidatorResult.Ignore;
      }
      if (msg.data.length > max) {
        p.counters.rejected++;
        return TopicValidatorResult.Reject;
      }
      try {
        const verdict = VALIDATOR_RESULT[await ch.validate(msg.data, peer.toString())];
        if (verdict === TopicValidatorResult.Reject) p.counters.rejected++;
        return verdict;
      } catch (err) {
        log.debug({ err, topic: ch.topic }, 'channel validator failed');
        return TopicValidatorResult.Ignore;
      }
    });
    pubsub.subscribe(ch.topic);
  }

  return {
    async broadcast(channel, data) {
      if (!channels.some((c) => c.topic === channel)) {
        throw new Error(`Cannot broadcast on ${channel}: not a configured channel`);
      }
      try {
        await pubsub.publish(channel, data);
      } catch (err) {
        log.debug({ err, topic: channel }, 'broadcast skipped');
      }
    },
  };
}
