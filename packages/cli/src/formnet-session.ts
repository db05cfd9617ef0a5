import { randomInt } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { generateWireGuardKeyPair, type KeyPair } from '@formation/identity';
import { FormError, formHome } from '@formation/interface';
import {
  activeMembership,
  bringUpMember,
  createNetns,
  type LiveSession,
  leaveIfCurrent,
  openTemporaryPeer,
  processIdentity,
  type ReapedSession,
  reapSessions,
  requestJoin,
  run,
  type SessionRecord,
  sessionCloser,
  writeSessionRecord,
} from '@formation/net';
import { createLogger, type Logger } from '@formation/service';
import { developerKey, serviceClient } from './node-client.ts';

/** What a node tells a developer tool (formnet API `GET /node`). */
export interface FormnetNodeInfo {
  node: string;
  netns: string | null;
  wireguardPort: number;
  formnetAddress: string;
  instanceCidr: string;
  domain: string;
  dns: { host: string; port: number };
  /** The node's public address, when it has one (`form node up --public-address`). */
  publicAddress?: string | null;
  /** `host:port` where the node's WireGuard is reachable from other machines. */
  wireguardEndpoint?: string | null;
}

/** A formnet membership commands can use: the permanent one, or a temporary peer for this command. */
export interface FormnetSession {
  kind: 'permanent' | 'temporary' | 'same-host';
  /** Namespace to run commands in (same-host fallback only); undefined = this process's namespace. */
  netns: string | undefined;
  /** This machine's formnet address. */
  address: string;
  info: FormnetNodeInfo;
  /** Resolve `<name>`, `<name>.<domain>` or an IP to the instance's formnet address. */
  resolve(host: string): Promise<string>;
  /** Leave formnet and remove what the session made (nothing for the permanent membership). Idempotent. */
  close(): Promise<void>;
}

/** Where formnet keeps its files under FORM_HOME. */
export function formnetPaths(home: string = formHome()) {
  const dir = join(home, 'formnet');
  return {
    dir,
    sessions: join(dir, 'sessions'),
    member: join(dir, 'member.json'),
    wireguardLog: join(dir, 'wireguard-go.log'),
  };
}

/** Library logs never mix into a command's output: silent, or on stderr with FORM_DEBUG. */
export function sessionLogger(): Logger {
  return createLogger(process.env.FORM_DEBUG ? 'debug' : 'silent', 2);
}

/** `GET /node`, with `wireguardEndpoint` filled from the public address when the node does not say it. */
export async function nodeInfo(node?: string): Promise<FormnetNodeInfo> {
  const info = await (await serviceClient('formnet', { node, sign: false })).get<FormnetNodeInfo>('/node');
  if (!info.wireguardEndpoint && info.publicAddress)
    info.wireguardEndpoint = `${info.publicAddress}:${info.wireguardPort}`;
  return info;
}

/** Whether this process may make network interfaces (root, or CAP_NET_ADMIN in its effective set). */
export function hasNetAdmin(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return eff !== undefined && (BigInt(`0x${eff}`) & (1n << 12n)) !== 0n;
  } catch {
    return false;
  }
}

export function requireNetAdmin(what: string): void {
  if (!hasNetAdmin()) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      `Cannot ${what}: making the WireGuard interface needs root (CAP_NET_ADMIN)`,
      {
        hint: 'Run the command with sudo. Only the interface needs it: build, ship, status and logs work without root.',
      },
    );
  }
}

/**
 * Reap temporary sessions whose `form` process is gone (SIGKILL, crash): their interface or namespace
 * and wireguard-go go, and the node gets a signed leave when it still holds that session's key. Run by
 * every command that opens a session, `form formnet status` and `form node down`.
 */
export async function reapFormnetSessions(logger: Logger = sessionLogger()): Promise<ReapedSession[]> {
  // Sessions are made as root; without it their interfaces cannot be removed: keep the records for a root run.
  if (!hasNetAdmin()) return [];
  const { sessions } = formnetPaths();
  let key: KeyPair | undefined;
  return reapSessions(sessions, {
    logger,
    leave: async (rec) => {
      key ??= await developerKey();
      if (rec.memberId !== key.address) return false; // another identity joined; not ours to sign for
      const client = await serviceClient('formnet', { node: rec.nodeUrl });
      // A node that does not answer must not hold up the command (it drops the peer on our next join).
      return Promise.race([
        leaveIfCurrent(client, key, rec.wgPublicKey),
        new Promise<never>((_, fail) => setTimeout(() => fail(new Error('no answer in 5 s')), 5_000).unref()),
      ]);
    },
  });
}

function resolverFor(info: FormnetNodeInfo, servers: Array<{ host: string; port: number }>) {
  return async (host: string): Promise<string> => {
    if (isIPv4(host)) return host;
    const fqdn = host.includes('.') ? host : `${host}.${info.domain}`;
    let lastCode: string | undefined;
    for (const s of servers) {
      const resolver = new Resolver({ timeout: 2000, tries: 2 });
      resolver.setServers([`${s.host}:${s.port}`]);
      try {
        const [ip] = await resolver.resolve4(fqdn);
        if (ip) return ip;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'ENOTFOUND' || code === 'ENODATA') {
          throw new FormError(
            'INSTANCE_NOT_FOUND',
            `Cannot resolve ${fqdn}: no instance has that name on this network`,
            {
              hint: `List your instances with \`form manage list\`; names are <Formfile NAME>.${info.domain}`,
            },
          );
        }
        lastCode = code ?? (err as Error).message;
      }
    }
    throw new FormError('NET_ERROR', `Cannot resolve ${fqdn}: the node's DNS answered ${lastCode ?? 'nothing'}`, {
      hint: 'Use the instance formnet IP (form manage list shows it).',
    });
  };
}

/**
 * A formnet membership for one command (`form ssh`, `form proxy`), in this order:
 * 1. the permanent membership (`form formnet up`) when it is up: nothing is made;
 * 2. a temporary peer in this process's namespace, the node at its public WireGuard endpoint
 *    (`openTemporaryPeer`: interface `fdw<tag>`, keepalive 25 s, formnet routes and leak guard only);
 * 3. the same-host fallback for a node on this machine with `--netns` and no public address: a
 *    namespace `fdev<tag>` linked to the node's namespace by a veth pair, commands run inside it.
 * Temporary sessions are recorded under `$FORM_HOME/formnet/sessions` and reaped by the next command
 * if this process dies; stale ones are reaped first.
 */
export async function openFormnetSession(opts: { node?: string } = {}): Promise<FormnetSession> {
  const logger = sessionLogger();
  await reapFormnetSessions(logger);
  const info = await nodeInfo(opts.node);
  const byName = (extra: Array<{ host: string; port: number }>) => resolverFor(info, [...extra, info.dns]);

  const member = await activeMembership(formnetPaths().member);
  if (member) {
    return {
      kind: 'permanent',
      netns: undefined,
      address: member.address,
      info,
      resolve: byName([{ host: member.dnsServer, port: 53 }]),
      close: async () => undefined,
    };
  }
  if (info.wireguardEndpoint) {
    requireNetAdmin('open a temporary formnet peer');
    const key = await developerKey();
    const client = await serviceClient('formnet', { node: opts.node });
    const peer = await openTemporaryPeer({
      sessionsDir: formnetPaths().sessions,
      nodeUrl: client.baseUrl,
      memberId: key.address,
      node: { id: info.node, endpoint: info.wireguardEndpoint },
      join: (wgPublicKey) => requestJoin(client, key, { wgPublicKey }),
      leave: (wgPublicKey) => leaveIfCurrent(client, key, wgPublicKey),
      logger,
    });
    return {
      kind: 'temporary',
      netns: undefined,
      address: peer.address,
      info,
      resolve: byName([{ host: info.formnetAddress, port: 53 }]),
      close: () => peer.close(),
    };
  }
  if (info.netns) return openSameHostSession(info, opts.node, logger);
  throw new FormError(
    'HOST_UNSUPPORTED',
    'Cannot open a temporary formnet peer: the node has no public WireGuard endpoint',
    {
      hint: 'Start the node with `form node up --public-address <ip>`, or join formnet permanently (`form formnet up`) through a node that has one.',
    },
  );
}

/**
 * The same-host fallback (a node on this machine with `--netns` and no public address): a namespace
 * `fdev<tag>` linked to the node's namespace by a veth pair (link-local /30 underlay), the WireGuard
 * interface inside it. Commands run in that namespace.
 */
async function openSameHostSession(
  info: FormnetNodeInfo,
  node: string | undefined,
  logger: Logger,
): Promise<FormnetSession> {
  const nodeNs = info.netns as string;
  requireNetAdmin('open a temporary formnet peer');
  const key = await developerKey();
  const client = await serviceClient('formnet', { node });
  const tag = randomInt(0, 0xffffff).toString(16).padStart(6, '0');
  const ns = `fdev${tag}`;
  const wg = generateWireGuardKeyPair();
  const sessions = formnetPaths().sessions;
  const rec: SessionRecord = {
    tag,
    iface: `fdw${tag}`,
    netns: ns,
    wireguardGo: null,
    cli: processIdentity() as NonNullable<ReturnType<typeof processIdentity>>,
    nodeUrl: client.baseUrl,
    memberId: key.address,
    wgPublicKey: wg.publicKey,
    leakGuard: false,
    createdAt: new Date().toISOString(),
  };
  await writeSessionRecord(sessions, rec);
  let address = '';
  // removeSessionResources deletes the namespace too (rec.netns).
  const live: LiveSession = { joined: false };
  const close = sessionCloser(sessions, rec, live, (pub) => leaveIfCurrent(client, key, pub));
  try {
    await createNetns(ns);
    // Underlay: a /30 from 169.254.0.0/16 that the node's namespace does not use yet.
    const used = await run('ip', ['-o', '-4', 'addr', 'show'], { netns: nodeNs });
    let base = 0;
    for (let i = 0; i < 20; i++) {
      base = randomInt(1, 16383) * 4;
      if (!used.includes(`169.254.${base >> 8}.${(base & 255) + 1}/`)) break;
    }
    const nodeSide = `169.254.${base >> 8}.${(base & 255) + 1}`;
    const devSide = `169.254.${base >> 8}.${(base & 255) + 2}`;
    await run('ip', ['link', 'add', `fdv${tag}`, 'type', 'veth', 'peer', 'name', `fnv${tag}`]);
    await run('ip', ['link', 'set', `fdv${tag}`, 'netns', ns]);
    await run('ip', ['link', 'set', `fnv${tag}`, 'netns', nodeNs]);
    await run('ip', ['-n', ns, 'addr', 'add', `${devSide}/30`, 'dev', `fdv${tag}`]);
    await run('ip', ['-n', nodeNs, 'addr', 'add', `${nodeSide}/30`, 'dev', `fnv${tag}`]);
    await run('ip', ['-n', ns, 'link', 'set', `fdv${tag}`, 'up']);
    await run('ip', ['-n', nodeNs, 'link', 'set', `fnv${tag}`, 'up']);

    const join = await requestJoin(client, key, { wgPublicKey: wg.publicKey });
    live.joined = true;
    address = join.address;
    const peers = join.peers.map((p) =>
      p.id === info.node ? { ...p, endpoint: `${nodeSide}:${info.wireguardPort}` } : p,
    );
    const device = await bringUpMember({
      name: rec.iface,
      netns: ns,
      privateKey: wg.privateKey,
      join: { ...join, peers },
      logger,
    });
    live.device = device;
    if (device.pid !== undefined) {
      rec.wireguardGo = processIdentity(device.pid) ?? null;
      await writeSessionRecord(sessions, rec);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { kind: 'same-host', netns: ns, address, info, resolve: resolverFor(info, [info.dns]), close };
}
