// What the VMM's own nft tables (egress.ts, activity.ts, wake-gate.ts) share: one table per bridge and
// purpose, named so that `nft delete table` removes exactly ours, and addresses checked before they are
// written into a ruleset (a string that is not an address never reaches nft).

import { isIPv4 } from 'node:net';

/** Our nft table named `form_<purpose>_<bridge>` (a bridge name's other characters become `_`). */
export function bridgeTableName(purpose: 'egress' | 'wake' | 'act', bridge: string): string {
  return `form_${purpose}_${bridge.replace(/[^A-Za-z0-9]/g, '_')}`;
}

/**
 * Whether `ip` is a dotted-quad IPv4 address (no prefix, each part 0-255, no leading zeros: `010.0.0.1`
 * reads as octal to some parsers and decimal to others, so it is refused like node:net refuses it).
 */
export function isIpv4(ip: string): boolean {
  return isIPv4(ip);
}
