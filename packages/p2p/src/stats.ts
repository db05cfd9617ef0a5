/** Node-wide counters of gossip and anti-entropy (per-peer ones are in `PeerBook`). */
export interface P2PStats {
  gossipReceived: number;
  gossipAccepted: number;
  gossipRejected: number;
  gossipIgnored: number;
  published: number;
  syncs: number;
  syncAccepted: number;
}

export function emptyStats(): P2PStats {
  return {
    gossipReceived: 0,
    gossipAccepted: 0,
    gossipRejected: 0,
    gossipIgnored: 0,
    published: 0,
    syncs: 0,
    syncAccepted: 0,
  };
}
