// What the VMM's own nft tables (egress.ts, activity.ts, wake-gate.ts) share: one table per bridge and
// purpose, named so that `nft delete table` removes exactly ours, and addresses checked before they are
// written into a ruleset (a string that is not an address never reaches nft).

/** Our nft table named `form_<purpose>_<bridge>` (a bridge name's other characters become `_`). */
export function bridgeTableName(purpose: 'egress' | 'wake' | 'act', bridge: string): string {
  return `form_${purpose}_${bridge.replace(/[^A-Za-z0-9]/g, '_')}`;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Whether `ip` is a dotted-quad IPv4 address (no prefix, each part 0-255). */
export function isIpv4(ip: string): boolean {
  const m = IPV4_RE.exec(ip);
  return m?.slice(1).every((x) => Number(x) <= 255) ?? false;
}
