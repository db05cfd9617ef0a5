// Public TCP ports (issue 19): an admitted node grants owners' port claims (signed port.granted); a
// quorum of grants makes a claim the port's holder (state views). An honest node grants a port to at
// most one live claim at a time and never while another claim holds it — that is what keeps a claim
// backdated to jump ahead of an established holder from ever getting the port.
import type { KeyPair } from '@formation/identity';
import type { Logger } from '@formation/service';
import type { PortView, StateStore } from '@formation/state';
import { followState } from './follow-state.ts';

/**
 * The claims `me` should grant now (pure): per port, nothing while a claim holds it (active) or while
 * another live claim already has `me`'s grant; otherwise the first pending claim by the views' order
 * (ts, hash — every honest node picks the same one, so their grants do not split).
 *
 * @example grantsDue(views.ports, node.publicKey) // [{ claim, port }]
 */
export function grantsDue(ports: readonly PortView[], me: string): Array<{ claim: string; port: number }> {
  const byPort = new Map<number, PortView[]>();
  for (const p of ports) byPort.set(p.port, [...(byPort.get(p.port) ?? []), p]);
  const due: Array<{ claim: string; port: number }> = [];
  for (const [port, claims] of byPort) {
    if (claims.some((c) => c.state === 'active' || c.grantedBy.includes(me))) continue;
    const first = claims
      .filter((c) => c.state === 'pending')
      .sort((x, y) => x.ts - y.ts || (x.claim < y.claim ? -1 : x.claim > y.claim ? 1 : 0))[0];
    if (first) due.push({ claim: first.claim, port });
  }
  return due;
}

export interface PortGranterOptions {
  store: Pick<StateStore, 'views' | 'author' | 'onAccepted'>;
  key: KeyPair;
  logger: Logger;
  /** How often to look besides on accepted port ops (ms); default 5000. */
  everyMs?: number;
}

/** Grant due port claims now, on every accepted port op, and on a timer. */
export function startPortGranter(o: PortGranterOptions): { grantNow(): void; close(): void } {
  const log = o.logger.child({ component: 'port-grants' });
  const me = o.key.publicKey;
  const grantNow = () => {
    try {
      const v = o.store.views();
      if (!v.nodes.some((n) => n.id === me)) return; // not admitted: our grant would not count
      for (const g of grantsDue(v.ports, me)) {
        o.store.author(o.key, 'port.granted', g);
        log.info(g, 'port claim granted');
      }
    } catch (err) {
      log.warn({ err }, 'port grants not made');
    }
  };
  const close = followState(o.store, grantNow, {
    everyMs: o.everyMs ?? 5000,
    wants: (op) => op.kind.startsWith('port.') || op.kind === 'instance.delete',
  });
  grantNow();
  return { grantNow, close };
}
