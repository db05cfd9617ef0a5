/** Default ports (seed 000 + DESIGN.md). Every one is configurable. */
export const DEFAULT_PORTS = {
  formnet: 3001,
  vmm: 3002,
  pack: 3003,
  state: 3004,
  p2p: 3005,
  runtime: 3006,
  web: 3010,
  wireguard: 51820,
} as const;

/** The formnet address range (innernet-style /9). */
export const FORMNET_CIDR = '10.128.0.0/9';

/** Default DNS domain for instances: `<name>.<domain>`. */
export const DEFAULT_DOMAIN = 'dev.formation.local';

/**
 * Source ports health probes (the node's HEALTHCHECK runner and every ingress's prober) bind to, so a
 * replica's node can tell probing from visits (scale to zero: probes neither count as activity nor
 * wake a suspended replica). Outside every common OS's ephemeral range (Linux 32768–60999, Windows and
 * macOS 49152–65535, FreeBSD 10000–65535), so a visitor's connection never falls in it by chance.
 */
export const PROBE_SOURCE_PORTS = { first: 5100, last: 5999 } as const;
