import { randomInt } from 'node:crypto';
import { generateWireGuardKeyPair } from '@formation/identity';
import type { Logger } from '@formation/service';
import type { JoinResponse } from './formnet-service.ts';
import {
  removeSessionRecord,
  removeSessionResources,
  type SessionRecord,
  writeSessionRecord,
} from './formnet-sessions.ts';
import { bringUpMember } from './member-interface.ts';
import { DEFAULT_KEEPALIVE } from './members.ts';
import { processIdentity } from './process-identity.ts';
import type { WireGuardDevice } from './wireguard.ts';

export interface TemporaryPeerOptions {
  /** Where session records live (`<FORM_HOME>/formnet/sessions`). */
  sessionsDir: string;
  /** Formnet API URL of the node (recorded for the leave of a reaped session). */
  nodeUrl: string;
  /** The member id the join is signed by (the developer's address). */
  memberId: string;
  /** The node joined through, and its WireGuard endpoint as this machine reaches it (its public address). */
  node: { id: string; endpoint: string };
  /** Signed join with this WireGuard public key (the caller holds the signing key and the HTTP client). */
  join: (wgPublicKey: string) => Promise<JoinResponse>;
  /** Signed leave, sent only while the node still has this key for us; returns whether it was sent. */
  leave: (wgPublicKey: string) => Promise<boolean>;
  /** Seconds; keeps the NAT mapping of a member behind NAT open (default 25). */
  keepalive?: number;
  logger: Logger;
}

export interface TemporaryPeer {
  tag: string;
  /** The WireGuard interface, in this process's namespace. */
  iface: string;
  /** This peer's formnet address. */
  address: string;
  device: WireGuardDevice;
  join: JoinResponse;
  /** Remove the interface (ends wireguard-go), leave, drop the record. Idempotent. */
  close(): Promise<void>;
}

/** The join answer's peers with the node at `endpoint` and every peer kept alive every `keepalive` s. Pure. */
export function sessionPeers(
  join: JoinResponse,
  node: { id: string; endpoint: string },
  keepalive = DEFAULT_KEEPALIVE,
): JoinResponse['peers'] {
  return join.peers.map((p) => ({
    ...p,
    ...(p.id === node.id ? { endpoint: node.endpoint } : {}),
    persistentKeepalive: keepalive,
  }));
}

/** What a temporary session has made so far, for its teardown. */
export interface LiveSession {
  /** Set once the node accepted the join: the teardown then sends the leave. */
  joined: boolean;
  device?: WireGuardDevice;
}

/**
 * The teardown of one temporary session, run once however often it is called: our wireguard-go first
 * (by its PID: a TUN device keeps it, and a namespace it sits in, alive otherwise), then the recorded
 * interface/namespace, the leave if the node accepted the join (its failure ignored: the node drops
 * the key on the next join), and the record last, so a crash midway is still reaped.
 */
export function sessionCloser(
  sessionsDir: string,
  rec: SessionRecord,
  live: LiveSession,
  leave: (wgPublicKey: string) => Promise<unknown>,
): () => Promise<void> {
  let closed = false;
  return async () => {
    if (closed) return;
    closed = true;
    await live.device?.destroy().catch(() => undefined);
    await removeSessionResources(rec);
    if (live.joined) await leave(rec.wgPublicKey).catch(() => false);
    await removeSessionRecord(sessionsDir, rec.tag);
  };
}

/**
 * Join formnet for the length of one command, from wherever this process runs: a fresh WireGuard key,
 * a signed join, an interface `fdw<tag>` in the current namespace with the node as peer at its public
 * endpoint (keepalive 25 s, for NAT), routes for formnet only plus the leak guard. Recorded in
 * `sessionsDir` before anything is made, so `reapSessions` removes it if this process is killed.
 *
 * @example
 * const s = await openTemporaryPeer({ sessionsDir, nodeUrl, memberId: key.address,
 *   node: { id: info.node, endpoint: info.wireguardEndpoint }, join: (pub) => requestJoin(url, key, { wgPublicKey: pub }),
 *   leave: (pub) => leaveIfCurrent(url, key, pub), logger });
 * try { … ssh to 10.129.0.2 … } finally { await s.close(); }
 */
export async function openTemporaryPeer(o: TemporaryPeerOptions): Promise<TemporaryPeer> {
  const tag = randomInt(0, 0xffffff).toString(16).padStart(6, '0');
  const iface = `fdw${tag}`;
  const wg = generateWireGuardKeyPair();
  const cli = processIdentity();
  if (!cli) throw new Error('cannot read /proc/self/stat');
  const rec: SessionRecord = {
    tag,
    iface,
    netns: null,
    wireguardGo: null,
    cli,
    nodeUrl: o.nodeUrl,
    memberId: o.memberId,
    wgPublicKey: wg.publicKey,
    leakGuard: true,
    createdAt: new Date().toISOString(),
  };
  await writeSessionRecord(o.sessionsDir, rec);
  const live: LiveSession = { joined: false };
  const close = sessionCloser(o.sessionsDir, rec, live, o.leave);
  try {
    const join = await o.join(wg.publicKey);
    live.joined = true;
    const device = await bringUpMember({
      name: iface,
      privateKey: wg.privateKey,
      join: { ...join, peers: sessionPeers(join, o.node, o.keepalive) },
      logger: o.logger,
    });
    live.device = device;
    const pid = device.pid;
    if (pid !== undefined) {
      rec.wireguardGo = processIdentity(pid) ?? null;
      await writeSessionRecord(o.sessionsDir, rec);
    }
    return { tag, iface, address: join.address, device, join, close };
  } catch (err) {
    await close();
    throw err;
  }
}
