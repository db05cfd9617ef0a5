import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateWireGuardKeyPair, wireGuardKeyPairFromPrivate } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createLogger, type Logger } from '@formation/service';
import { run, tryRun } from './exec.ts';
import type { JoinResponse } from './formnet-service.ts';
import { installLeakGuard, removeLeakGuardIfUnused } from './leak-guard.ts';
import { assertJoinAnswer } from './member-interface.ts';
import { endProcess, isSameProcess, type ProcessIdentity, processIdentity } from './process-identity.ts';
import { reconcile } from './reconcile.ts';
import { applyResolver, planResolver, probeResolver, type ResolverPlan, removeResolver } from './resolver.ts';
import { sessionPeers } from './temporary-peer.ts';
import { WG_RUN_DIR, type WgPeerStatus, WireGuardDevice } from './wireguard.ts';

export const DEFAULT_MEMBER_IFACE = 'formnet0';

/**
 * `<FORM_HOME>/formnet/member.json` (0600): the member's WireGuard key — kept across `down`/`up`, so the
 * node gives it the same address and peers keep their entry — and, while up, what `up` made.
 */
export interface MemberFile {
  version: 1;
  privateKey: string;
  publicKey: string;
  up?: MemberUpState | undefined;
}

export interface MemberUpState {
  iface: string;
  address: string;
  nodeUrl: string;
  nodeId: string;
  domain: string | null;
  /** The node's formnet DNS (its formnet address, port 53). */
  dnsServer: string;
  /** Our detached wireguard-go (null with kernel WireGuard). */
  wireguardGo: ProcessIdentity | null;
  resolver: ResolverPlan | null;
  since: string;
}

async function writeMemberFile(file: string, m: MemberFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(`${file}.tmp`, `${JSON.stringify(m, null, 2)}\n`, { mode: 0o600 });
  await chmod(`${file}.tmp`, 0o600);
  await rename(`${file}.tmp`, file);
}

/** The member file, or undefined when there is none; CONFIG_INVALID (file kept) when it is not one. */
export async function readMemberFile(file: string): Promise<MemberFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const m = JSON.parse(text) as MemberFile;
    if (m?.version !== 1 || wireGuardKeyPairFromPrivate(m.privateKey).publicKey !== m.publicKey) throw new Error();
    return m;
  } catch {
    throw new FormError(
      'CONFIG_INVALID',
      `Cannot read ${file}: it is not a formnet member file (version 1 with a WireGuard key pair)`,
      {
        hint: 'Move it away to start over with a new key (the node then gives this machine a new peer entry); it was left as it is.',
      },
    );
  }
}

/** The member file, made with a fresh WireGuard key when there is none. */
export async function loadOrCreateMember(file: string): Promise<MemberFile> {
  const m = await readMemberFile(file);
  if (m) return m;
  const k = generateWireGuardKeyPair();
  const made: MemberFile = { version: 1, privateKey: k.privateKey, publicKey: k.publicKey };
  await writeMemberFile(file, made);
  return made;
}

async function ifacePublicKey(iface: string): Promise<string | undefined> {
  try {
    return (await run('wg', ['show', iface, 'public-key'])).trim();
  } catch {
    return undefined;
  }
}

export interface MemberUpOptions {
  /** The member file (`<FORM_HOME>/formnet/member.json`). */
  file: string;
  /** Interface name (default formnet0; unique on the host: wireguard-go's socket is not per namespace). */
  iface?: string | undefined;
  /** Where detached wireguard-go writes its output. */
  logFile: string;
  nodeUrl: string;
  /** The node joined through: its member id, WireGuard endpoint as reachable from here, formnet address. */
  node: { id: string; endpoint: string; formnetAddress: string };
  domain: string | null;
  /** Signed join with the member's WireGuard public key. */
  join: (wgPublicKey: string) => Promise<JoinResponse>;
  /** Configure this machine's resolver for the domain (default true). */
  resolver?: boolean;
  keepalive?: number;
  logger: Logger;
}

export interface MemberUpResult {
  iface: string;
  address: string;
  /** False when the interface was already up and only reconciled. */
  created: boolean;
  peers: number;
  resolver: ResolverPlan | null;
  wireguardGo: ProcessIdentity | null;
}

/**
 * Make (or reconcile) the permanent membership: a signed join with the kept key (same key → same
 * address), the interface in this namespace with every member as a peer at its endpoint (the node at
 * `node.endpoint`), keepalive 25 s, routes for formnet only plus the leak guard, wireguard-go detached so
 * it outlives us, the resolver for the domain. Run again, it only applies what changed.
 */
export async function memberUp(o: MemberUpOptions): Promise<MemberUpResult> {
  const iface = o.iface ?? DEFAULT_MEMBER_IFACE;
  const m = await loadOrCreateMember(o.file);
  if (m.up && m.up.iface !== iface && (await ifacePublicKey(m.up.iface)) === m.publicKey) {
    throw new FormError(
      'CONFLICT',
      `Cannot bring formnet up on ${iface}: this machine is a member on ${m.up.iface} already`,
      {
        hint: `Run \`form formnet down\` first, or keep ${m.up.iface}.`,
      },
    );
  }
  const current = await ifacePublicKey(iface);
  if (current !== undefined && current !== m.publicKey) {
    throw new FormError(
      'CONFLICT',
      `Cannot bring formnet up on ${iface}: a WireGuard interface of that name with another key exists`,
      {
        hint: 'Pick another name with --interface, or remove that interface.',
      },
    );
  }
  const join = await o.join(m.publicKey);
  assertJoinAnswer(join);
  let created = false;
  let dev: WireGuardDevice;
  let wireguardGo = m.up?.iface === iface ? (m.up.wireguardGo ?? null) : null;
  if (current !== undefined) {
    dev = await WireGuardDevice.attach({ name: iface, logger: o.logger });
    const want = join.interface.address;
    const have = await run('ip', ['-j', '-4', 'addr', 'show', 'dev', iface]);
    const addrs = (JSON.parse(have || '[]') as Array<{ addr_info?: Array<{ local: string; prefixlen: number }> }>)
      .flatMap((l) => l.addr_info ?? [])
      .map((a) => `${a.local}/${a.prefixlen}`);
    if (addrs.length !== 1 || addrs[0] !== want) {
      await run('ip', ['addr', 'flush', 'dev', iface]);
      await run('ip', ['addr', 'add', want, 'dev', iface]);
    }
  } else {
    // A stale wireguard-go of ours (its interface gone) or a stale socket would block the name.
    if (m.up?.iface === iface) await endProcess(m.up.wireguardGo);
    dev = await WireGuardDevice.create({
      name: iface,
      privateKey: m.privateKey,
      addresses: [join.interface.address],
      mtu: join.interface.mtu,
      detached: { logFile: o.logFile },
      logger: o.logger,
    });
    created = true;
    wireguardGo = dev.pid !== undefined ? (processIdentity(dev.pid) ?? null) : null;
  }
  try {
    await installLeakGuard(undefined, join.interface.network);
    await reconcile(dev, sessionPeers(join, o.node, o.keepalive), o.logger);
  } catch (err) {
    if (created) await dev.destroy().catch(() => undefined);
    throw err;
  }
  let resolver = m.up?.resolver ?? null;
  if (o.resolver !== false && o.domain) {
    const host = await probeResolver();
    const previous = resolver?.kind === 'netns-resolv' ? resolver.previous : null;
    resolver = await applyResolver(
      host,
      planResolver(host, { iface, server: o.node.formnetAddress, domain: o.domain, previous }),
    );
  }
  const up: MemberUpState = {
    iface,
    address: join.address,
    nodeUrl: o.nodeUrl,
    nodeId: o.node.id,
    domain: o.domain,
    dnsServer: o.node.formnetAddress,
    wireguardGo,
    resolver,
    since: created || !m.up ? new Date().toISOString() : m.up.since,
  };
  await writeMemberFile(o.file, { ...m, up });
  const peers = (await dev.show()).peers.length;
  o.logger.info({ iface, address: join.address, created, peers }, 'formnet membership up');
  return { iface, address: join.address, created, peers, resolver, wireguardGo };
}

export interface MemberDownResult {
  /** False when there was no membership up (nothing to do). */
  wasUp: boolean;
  iface?: string;
  /** Whether the node was told (signed leave). */
  left: boolean;
  leaveError?: string;
}

/**
 * End the permanent membership: signed leave (via `leave`, which may decline when the node moved on),
 * the interface removed, our wireguard-go ended by its PID, leak guard and resolver settings undone.
 * The key stays in the member file, so `up` later gets the same address. Idempotent.
 */
export async function memberDown(o: {
  file: string;
  leave: (wgPublicKey: string, up: MemberUpState) => Promise<boolean>;
  logger: Logger;
}): Promise<MemberDownResult> {
  const m = await readMemberFile(o.file);
  if (!m?.up) return { wasUp: false, left: false };
  const up = m.up;
  const r: MemberDownResult = { wasUp: true, iface: up.iface, left: false };
  try {
    r.left = await o.leave(m.publicKey, up);
  } catch (err) {
    r.leaveError = (err as Error).message;
    o.logger.warn({ err: r.leaveError }, 'formnet leave failed: removing the interface anyway');
  }
  // Our interface only: another key on that name is not ours to delete.
  const key = await ifacePublicKey(up.iface);
  await endProcess(up.wireguardGo);
  if (key === m.publicKey) await tryRun('ip', ['link', 'del', up.iface]);
  await rm(`${WG_RUN_DIR}/${up.iface}.sock`, { force: true }).catch(() => undefined);
  await removeLeakGuardIfUnused();
  await removeResolver(up.resolver ?? undefined);
  await writeMemberFile(o.file, { version: 1, privateKey: m.privateKey, publicKey: m.publicKey });
  o.logger.info({ iface: up.iface, left: r.left }, 'formnet membership down');
  return r;
}

export interface MemberStatus {
  /** Whether `up` was run (and not `down`) — the member file says so. */
  configured: boolean;
  /** Whether the interface exists now with our key. */
  running: boolean;
  wgPublicKey?: string;
  iface?: string;
  address?: string;
  domain?: string | null;
  dnsServer?: string;
  nodeUrl?: string;
  wireguardGoAlive?: boolean;
  resolver?: ResolverPlan | null;
  peers: WgPeerStatus[];
}

/** What is up now: from the member file and `wg show`. */
export async function memberStatus(file: string): Promise<MemberStatus> {
  const m = await readMemberFile(file);
  if (!m?.up) return { configured: false, running: false, peers: [], ...(m ? { wgPublicKey: m.publicKey } : {}) };
  const running = (await ifacePublicKey(m.up.iface)) === m.publicKey;
  let peers: WgPeerStatus[] = [];
  if (running) peers = (await (await WireGuardDevice.attach({ name: m.up.iface, logger: silentLogger })).show()).peers;
  return {
    configured: true,
    running,
    wgPublicKey: m.publicKey,
    iface: m.up.iface,
    address: m.up.address,
    domain: m.up.domain,
    dnsServer: m.up.dnsServer,
    nodeUrl: m.up.nodeUrl,
    wireguardGoAlive: m.up.wireguardGo ? isSameProcess(m.up.wireguardGo) : running,
    resolver: m.up.resolver,
    peers,
  };
}

/** The permanent membership when it is up and running here (what `form ssh` uses instead of a temporary peer). */
export async function activeMembership(file: string): Promise<MemberUpState | undefined> {
  const m = await readMemberFile(file).catch(() => undefined);
  if (!m?.up) return undefined;
  return (await ifacePublicKey(m.up.iface)) === m.publicKey ? m.up : undefined;
}

const silentLogger = createLogger('silent');
