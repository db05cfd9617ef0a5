import type { Logger } from '@formation/service';
import { multiaddr } from '@multiformats/multiaddr';
import type { P2PHost } from './host.ts';

/** How long one dial may take. */
export const DIAL_TIMEOUT_MS = 10_000;

/**
 * The bootstrap addresses to dial now: all but those whose peer (as last seen at that address) is
 * connected, and those where we found ourselves (a node listed in its own bootstrap list).
 *
 * @example addrsToRedial(['/a', '/b'], new Map([['/a', 'P1']]), 'ME', new Set(['P1'])) // ['/b']
 */
export function addrsToRedial(
  addrs: readonly string[],
  seenAt: ReadonlyMap<string, string>,
  self: string,
  connected: ReadonlySet<string>,
): string[] {
  return addrs.filter((addr) => {
    const known = seenAt.get(addr);
    if (known === self) return false;
    return !(known && connected.has(known));
  });
}

export interface Bootstrap {
  /** Dial a multiaddr; resolves to the peer ID found there. */
  dial(addr: string): Promise<string>;
  /** Dial every bootstrap address whose peer is not connected; failures are logged, not thrown. */
  redial(): Promise<void>;
}

export function createBootstrap(deps: { libp2p: P2PHost; addrs: readonly string[]; log: Logger }): Bootstrap {
  const { libp2p, addrs, log } = deps;
  const seenAt = new Map<string, string>(); // multiaddr -> peer id seen there
  async function dial(addr: string): Promise<string> {
    const conn = await libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) });
    const id = conn.remotePeer.toString();
    seenAt.set(addr, id);
    return id;
  }
  return {
    dial,
    async redial() {
      const connected = new Set(libp2p.getConnections().map((c) => c.remotePeer.toString()));
      const due = addrsToRedial(addrs, seenAt, libp2p.peerId.toString(), connected);
      await Promise.allSettled(
        due.map(async (addr) => {
          try {
            await dial(addr);
          } catch (err) {
            log.debug({ err, addr }, 'bootstrap dial failed');
          }
        }),
      );
    },
  };
}
