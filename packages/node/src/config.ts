import { join } from 'node:path';
import { DEFAULT_DOMAIN, DEFAULT_PORTS, formHome } from '@formation/interface';
import { loadConfig } from '@formation/service';
import { type Static, Type } from '@sinclair/typebox';

/** formationd's configuration: `$FORM_HOME/node/config.json`, `FORM_*` env and flags, validated at start. */
export const NodeConfigSchema = Type.Object({
  dataDir: Type.String({ minLength: 1 }),
  /** Address the APIs listen on (loopback by default; never the instances' network). */
  host: Type.String({ default: '127.0.0.1' }),
  /** Added to every default port: several nodes on one host (the devnet) use different offsets. */
  portOffset: Type.Integer({ minimum: 0, maximum: 60000, default: 0 }),
  domain: Type.String({
    default: DEFAULT_DOMAIN,
    pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$',
  }),
  /** Run the node's bridge, TAPs and WireGuard inside this network namespace (created on up, removed on down). */
  netns: Type.Optional(Type.String({ pattern: '^[a-zA-Z0-9_-]{1,15}$' })),
  /** The node's slice of formnet for its instances; default: the first free /24 from 10.129.0.0 (recorded in state). */
  instanceCidr: Type.Optional(
    Type.String({
      pattern: '^10\\.(1[2-9][0-9]|2[0-5][0-9])\\.\\d{1,3}\\.\\d{1,3}/\\d{1,2}$',
    }),
  ),
  /** Address other nodes and developers reach this node's WireGuard and libp2p on (its underlay). */
  advertiseHost: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * The node's public address (an IPv4 on this host, e.g. its internet-facing interface): libp2p
   * (Noise), WireGuard and the TLS form of the developer APIs (state, pack, VMM, formnet; TLS bound to
   * the node key) listen on it, and it is what other nodes and developers reach. Implies
   * `advertiseHost`. Without it every API stays on `host` (loopback): a single-machine node.
   */
  publicAddress: Type.Optional(Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}$' })),
  /**
   * The ingress on the public address (issue 19): HTTP routed by Host and TLS passed through by SNI to
   * a healthy replica over formnet. 0 turns that listener off; without `publicAddress` there is none.
   */
  ingressHttpPort: Type.Integer({ minimum: 0, maximum: 65535, default: 80 }),
  ingressTlsPort: Type.Integer({ minimum: 0, maximum: 65535, default: 443 }),
  /**
   * Authoritative DNS for the network's domain on the public address (UDP), answering with the public
   * addresses of live ingress nodes (packages/node/src/public-dns.ts). 0 turns it off.
   */
  publicDnsPort: Type.Integer({ minimum: 0, maximum: 65535, default: 53 }),
  /**
   * The resolver (`host:port`, IPv4) through which this node checks custom domain proofs (TXT
   * `_formation.<domain>` or a CNAME); unset = the host's resolvers (/etc/resolv.conf).
   */
  publicResolver: Type.Optional(Type.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}:\\d{1,5}$' })),
  /**
   * Public DNS answers per second per source network (/24, /56) before the rate limit truncates (1 in
   * 2, TC=1: resolvers retry over TCP) or drops them; the burst is twice it (issue 19).
   */
  publicDnsRate: Type.Integer({ minimum: 1, maximum: 100_000, default: 20 }),
  /** How often a verified custom domain's proof is looked at again (ms). */
  domainRecheckMs: Type.Integer({ minimum: 100, default: 300_000 }),
  /** How long a verified domain's proof may be missing before this node records it lapsed (ms). */
  domainGraceMs: Type.Integer({ minimum: 0, default: 3_600_000 }),
  /** libp2p multiaddrs of nodes to join (the network's bootstrap list); empty = a network of one. */
  join: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
  /**
   * Keys (compressed secp256k1, hex) that may admit and remove nodes, written into the network's
   * genesis when this node starts a new network (no `join`). This node's own key is always an admin;
   * `form node up` adds the developer key it finds in FORM_HOME.
   */
  admins: Type.Array(Type.String({ pattern: '^0[23][0-9a-f]{64}$' }), { default: [], maxItems: 15 }),
  /** A new network's admission policy: `admins` (nodes count once an admin admits them) or `open`. */
  admission: Type.Union([Type.Literal('admins'), Type.Literal('open')], { default: 'admins' }),
  /** A new network's name (in its genesis). */
  networkName: Type.String({ minLength: 1, maxLength: 64, default: 'formation' }),
  /**
   * The genesis (network.init hash) of the network to join; without it the node follows the genesis
   * of the first node it syncs with (trust on first use).
   */
  genesis: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  /** How long a joining node waits to be admitted before giving up (ms; 0 = wait forever). */
  admissionTimeoutMs: Type.Integer({ minimum: 0, default: 0 }),
  /** How often the node gossips its signed presence (liveness, memory only; ms). */
  heartbeatMs: Type.Integer({ minimum: 100, default: 5000 }),
  /**
   * How often the node also records a durable `node.heartbeat` op (ms). Liveness comes from presence;
   * this keeps a "last seen" in the log without growing it by one op per beat.
   */
  heartbeatOpMs: Type.Integer({ minimum: 1000, default: 600_000 }),
  /** A node whose last heartbeat is older than this is unhealthy: its replicas are placed elsewhere (ms). */
  nodeTimeoutMs: Type.Integer({ minimum: 500, default: 30000 }),
  /** How long a joining node waits for a bootstrap node before registering (ms). */
  joinSyncTimeoutMs: Type.Integer({ minimum: 0, default: 10000 }),
  /**
   * Host other nodes' HTTP APIs (pack, VMM revisions) are reached on; default: the host of their
   * registered endpoint. A devnet (all nodes on one host's loopback) sets 127.0.0.1.
   */
  peerApiHost: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * Boot snapshots (issue 22, packages/vmm README "Boot snapshots"): the first replica of a Formpack on
   * this node leaves a template of its pre-identity boot (under `<dataDir>/templates`, 0600); later
   * replicas of that Formpack restore it instead of booting. On by default; `false` (or
   * `FORM_BOOT_SNAPSHOTS=false`) turns it off. Overrides `VMM_BOOT_SNAPSHOTS`.
   */
  bootSnapshots: Type.Boolean({ default: true }),
  /**
   * Disk budget of all boot templates of this node (MiB): templates of Formpacks no longer here or of
   * another QEMU are deleted, then the least recently used while over it. Overrides `VMM_BOOT_SNAPSHOT_MAX_MIB`.
   */
  bootSnapshotMaxMiB: Type.Integer({ minimum: 128, maximum: 16 * 1024 * 1024, default: 2048 }),
  /**
   * Standby VMs (one per request shape used last, restored paused ahead of time so the next replica of
   * it is only resumed): how many; 0 turns them off. Overrides `VMM_BOOT_STANDBY`.
   */
  bootStandby: Type.Integer({ minimum: 0, maximum: 16, default: 1 }),
  /**
   * Length of one autostop minute (ms): scale to zero suspends a replica idle `autostopMinutes` of these.
   * Only tests shorten it (`FORM_AUTOSTOP_MINUTE_MS`); at least 1 s, so a replica is never suspended
   * between two rounds of its own controller.
   */
  autostopMinuteMs: Type.Integer({ minimum: 1000, maximum: 60_000, default: 60_000 }),
  logLevel: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    {
      default: 'info',
    },
  ),
});
export type NodeConfig = Static<typeof NodeConfigSchema>;

export interface NodePorts {
  formnet: number;
  vmm: number;
  pack: number;
  state: number;
  p2p: number;
  dns: number;
  wireguard: number;
  runtime: number;
  runtimeRedis: number;
  web: number;
}

export function nodePorts(cfg: Pick<NodeConfig, 'portOffset'>): NodePorts {
  const o = cfg.portOffset;
  return {
    formnet: DEFAULT_PORTS.formnet + o,
    vmm: DEFAULT_PORTS.vmm + o,
    pack: DEFAULT_PORTS.pack + o,
    state: DEFAULT_PORTS.state + o,
    p2p: DEFAULT_PORTS.p2p + o,
    dns: 5353 + o,
    wireguard: DEFAULT_PORTS.wireguard + o,
    runtime: DEFAULT_PORTS.runtime + o,
    runtimeRedis: 6379 + o,
    web: DEFAULT_PORTS.web + o,
  };
}

/** Paths inside the data dir. */
export function nodePaths(dataDir: string) {
  const dir = join(dataDir, 'node');
  return {
    dir,
    pidFile: join(dir, 'formationd.pid'),
    logFile: join(dir, 'formationd.log'),
    infoFile: join(dir, 'node.json'),
    configFile: join(dir, 'config.json'),
    keyFile: join(dir, 'node-key.json'),
    stateDb: join(dir, 'state.db'),
    wgKeyFile: join(dir, 'wireguard.json'),
  };
}

export function loadNodeConfig(flags: Partial<NodeConfig> = {}, env: NodeJS.ProcessEnv = process.env): NodeConfig {
  const dataDir = flags.dataDir ?? formHome(env);
  return loadConfig(NodeConfigSchema, {
    file: nodePaths(dataDir).configFile,
    env: {
      host: env.FORM_HOST,
      portOffset: env.FORM_PORT_OFFSET,
      domain: env.FORM_DOMAIN,
      netns: env.FORM_NETNS,
      instanceCidr: env.FORM_INSTANCE_CIDR,
      logLevel: env.FORM_LOG_LEVEL,
      heartbeatMs: env.FORM_HEARTBEAT_MS,
      heartbeatOpMs: env.FORM_HEARTBEAT_OP_MS,
      nodeTimeoutMs: env.FORM_NODE_TIMEOUT_MS,
      joinSyncTimeoutMs: env.FORM_JOIN_SYNC_TIMEOUT_MS,
      peerApiHost: env.FORM_PEER_API_HOST,
      bootSnapshots: env.FORM_BOOT_SNAPSHOTS,
      bootSnapshotMaxMiB: env.FORM_BOOT_SNAPSHOT_MAX_MIB,
      bootStandby: env.FORM_BOOT_STANDBY,
      autostopMinuteMs: env.FORM_AUTOSTOP_MINUTE_MS,
      publicAddress: env.FORM_PUBLIC_ADDRESS,
      ingressHttpPort: env.FORM_INGRESS_HTTP_PORT,
      ingressTlsPort: env.FORM_INGRESS_TLS_PORT,
      publicDnsPort: env.FORM_PUBLIC_DNS_PORT,
      publicResolver: env.FORM_PUBLIC_RESOLVER,
      publicDnsRate: env.FORM_PUBLIC_DNS_RATE,
      domainRecheckMs: env.FORM_DOMAIN_RECHECK_MS,
      domainGraceMs: env.FORM_DOMAIN_GRACE_MS,
      admission: env.FORM_ADMISSION,
      networkName: env.FORM_NETWORK_NAME,
      genesis: env.FORM_GENESIS,
      admissionTimeoutMs: env.FORM_ADMISSION_TIMEOUT_MS,
    },
    flags: {
      ...(env.FORM_ADMINS && !flags.admins
        ? {
            admins: env.FORM_ADMINS.split(',')
              .map((k) => k.trim())
              .filter(Boolean),
          }
        : {}),
      ...flags,
      dataDir,
    },
  });
}

/** What a running daemon publishes in node.json (read by `form node status`). */
export interface NodeInfo {
  pid: number;
  startedAt: string;
  ready: boolean;
  version: string;
  host: string;
  ports: NodePorts;
  netns: string | null;
  domain: string;
  nodeAddress: string;
  accel: string;
  logFile: string;
  formnetAddress: string;
  instanceCidr: string;
  /** The network's genesis (network.init hash) this node follows; null for a pre-admission network. */
  genesis: string | null;
  p2p: string[];
  /** The public address the node's TLS APIs, libp2p and WireGuard listen on; null on a loopback-only node. */
  publicAddress?: string | null;
}
