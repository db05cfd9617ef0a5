import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type KeyPair, loadOrCreateKey } from '@formation/identity';
import type { NodeInfo } from './config.ts';
import type { WorldPlan } from './devnet-world.ts';

// What `form devnet up` made, as the devnet's state file (devnet.json) records it, and how its nodes'
// APIs are addressed.

const STATE_FILE = 'devnet.json';

/** One node of a devnet: a real formationd in its own namespace, on the devnet's underlay bridge. */
export interface DevnetNode {
  name: string;
  index: number;
  netns: string;
  dataDir: string;
  portOffset: number;
  /** The node's address on the underlay (only inside the devnet's namespaces). */
  underlayIp: string;
  instanceCidr: string;
  pid: number | null;
  /** Base URL of its APIs (each service on its port + portOffset: formnet 3001, vmm 3002, pack 3003, state 3004). */
  apiBase: string;
  /** From node.json once it is up. */
  info?: NodeInfo | undefined;
  /** An admin's node.admit for this node's key is in the network's state. */
  admitted?: boolean;
  /** World mode: the node's public address (its host namespace's eth0); its APIs are on that host's loopback. */
  publicAddress?: string;
}

/** World mode: the small internet around the nodes (see devnet-world.ts). */
export interface DevnetWorld {
  plan: WorldPlan;
  /** The visitor's HTTP server (in `<p>vis`), by PID. */
  visitorPid: number | null;
  /** One JSON line per request the visitor answered, with the source address (`VisitorRequest`). */
  visitorLog: string;
  /** The laptop's FORM_HOME: its own keys and kit config, nothing shared with the nodes. */
  laptopHome: string;
}

/** What `form devnet up` made, so `status`, `exec` and `down` find it (even after a crash). */
export interface DevnetState {
  version: 1;
  dir: string;
  prefix: string;
  bridgeNetns: string;
  subnet: string;
  portBase: number;
  createdAt: string;
  nodes: DevnetNode[];
  /** Extra environment given to every node (e.g. FORM_HEARTBEAT_MS). */
  env: Record<string, string>;
  /**
   * `local` (the default, and what a state file without it means): formationd in the root namespace,
   * APIs on 127.0.0.1 + port offset. `world`: each formationd inside its host namespace of a small
   * internet (standard ports, reachable only at its public address), with a visitor and a laptop.
   */
  mode?: 'local' | 'world';
  world?: DevnetWorld;
}

export interface DevnetUpOptions {
  nodes: number;
  /** Where the state file and the nodes' data dirs go. */
  dir: string;
  /** Namespace/interface prefix (≤ 8 chars): namespaces `<prefix>br`, `<prefix>1`…`<prefix>N`. */
  prefix?: string;
  /** Port offset of node 1; node i gets portBase + (i-1)*10. */
  portBase?: number;
  /** Environment for every formationd (FORM_HEARTBEAT_MS, FORM_NODE_TIMEOUT_MS, FORM_LOG_LEVEL …). */
  env?: Record<string, string>;
  /** How long each node may take to become ready (ms). */
  timeoutMs?: number;
  /** Build the world (hosts with public addresses, visitor, laptop behind NAT) instead of local mode. */
  world?: boolean;
}

export function devnetStatePath(dir: string): string {
  return join(dir, STATE_FILE);
}

export function readDevnet(dir: string): DevnetState | null {
  const p = devnetStatePath(dir);
  if (!existsSync(p)) return null;
  return JSON.parse(readFileSync(p, 'utf8')) as DevnetState;
}

/** Write the state file (atomically: a temp file renamed over it). */
export function saveDevnet(s: DevnetState): void {
  const p = devnetStatePath(s.dir);
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(tmp, p);
}

export function stateUrl(n: DevnetNode): string {
  return `${n.apiBase}:${3004 + n.portOffset}`;
}

export function serviceBase(n: DevnetNode, service: 'formnet' | 'vmm' | 'pack' | 'state'): string {
  const port = { formnet: 3001, vmm: 3002, pack: 3003, state: 3004 }[service];
  return `${n.apiBase}:${port + n.portOffset}`;
}

/**
 * The devnet's network admin key (`<dir>/admin-key.json`, 0600): written into the genesis by the first
 * node, it admits the others (what an operator does with `form node admit`).
 */
export function devnetAdminKey(s: Pick<DevnetState, 'dir'>): Promise<KeyPair> {
  return loadOrCreateKey(join(s.dir, 'admin-key.json'));
}
