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
