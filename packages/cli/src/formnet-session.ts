import { randomInt } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { generateWireGuardKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { bringUpMember, createNetns, deleteNetns, requestJoin, requestLeave, run } from '@formation/net';
import { ApiClient, createLogger } from '@formation/service';
import { developerKey, serviceUrl } from './node-client.ts';

/** What a node tells a developer tool on its host (formnet API `GET /node`). */
export interface FormnetNodeInfo {
  node: string;
  netns: string | null;
  wireguardPort: number;
  formnetAddress: string;
  instanceCidr: string;
  domain: string;
  dns: { host: string; port: number };
}

/** A temporary formnet membership: a namespace holding a WireGuard peer of the node. */
export interface FormnetSession {
  /** Namespace to run commands in (they reach formnet addresses over WireGuard). */
  netns: string;
  /** This session's formnet address. */
  address: string;
  info: FormnetNodeInfo;
  /** Resolve `<name>`, `<name>.<domain>` or an IP to the instance's formnet address. */
  resolve(host: string): Promise<string>;
  /** Leave formnet and remove the namespace (idempotent). */
  close(): Promise<void>;
}

export async function nodeInfo(node?: string): Promise<FormnetNodeInfo> {
  return new ApiClient(await serviceUrl('formnet', node)).get<FormnetNodeInfo>('/node');
}

/**
 * Join formnet for the length of one command, as `form ssh` and `form proxy` do when this machine has
 * not joined permanently: a fresh WireGuard key, a namespace `fdev<rand>` linked to the node's
 * namespace by a veth pair (link-local /30 underlay), a signed join (the node adds us as a peer), and
 * the interface up with the node as peer. Everything is removed on `close()`: leave (signed), delete
 * the namespace (which deletes the veth pair and ends wireguard-go).
 */
export async function openFormnetSession(opts: { node?: string } = {}): Promise<FormnetSession> {
  const info = await nodeInfo(opts.node);
  if (!info.netns) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      'Cannot open a temporary formnet peer: this node keeps formnet in the host namespace',
      {
        hint: 'Join formnet permanently (`form kit init --join-formnet`) or run the node with `form node up --netns <name>`.',
      },
    );
  }
  if (process.getuid?.() !== 0) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      'Cannot open a temporary formnet peer: creating a namespace and a WireGuard interface needs root',
      {
        hint: 'Run the command as root (sudo).',
      },
    );
  }
  const key = await developerKey();
  const formnetUrl = await serviceUrl('formnet', opts.node);
  // Library logs never mix into the command's output: silent, or on stderr with FORM_DEBUG.
  const logger = createLogger(process.env.FORM_DEBUG ? 'debug' : 'silent', 2);
  const tag = randomInt(0, 0xffffff).toString(16).padStart(6, '0');
  const ns = `fdev${tag}`;
  const wg = generateWireGuardKeyPair();
  let joined = false;
  let address = '';
  let device: Awaited<ReturnType<typeof bringUpMember>> | undefined;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    // End our wireguard-go first (by its PID): a TUN device keeps it, and the namespace, alive otherwise.
    await device?.destroy().catch(() => undefined);
    if (joined) await requestLeave(formnetUrl, key).catch(() => undefined);
    await deleteNetns(ns).catch(() => undefined);
  };
  try {
    await createNetns(ns);
    // Underlay: a /30 from 169.254.0.0/16 that the node's namespace does not use yet.
    const used = await run('ip', ['-o', '-4', 'addr', 'show'], { netns: info.netns });
    let base = 0;
    for (let i = 0; i < 20; i++) {
      base = randomInt(1, 16383) * 4;
      if (!used.includes(`169.254.${base >> 8}.${(base & 255) + 1}/`)) break;
    }
    const nodeSide = `169.254.${base >> 8}.${(base & 255) + 1}`;
    const devSide = `169.254.${base >> 8}.${(base & 255) + 2}`;
    await run('ip', ['link', 'add', `fdv${tag}`, 'type', 'veth', 'peer', 'name', `fnv${tag}`]);
    await run('ip', ['link', 'set', `fdv${tag}`, 'netns', ns]);
    await run('ip', ['link', 'set', `fnv${tag}`, 'netns', info.netns]);
    await run('ip', ['-n', ns, 'addr', 'add', `${devSide}/30`, 'dev', `fdv${tag}`]);
    await run('ip', ['-n', info.netns, 'addr', 'add', `${nodeSide}/30`, 'dev', `fnv${tag}`]);
    await run('ip', ['-n', ns, 'link', 'set', `fdv${tag}`, 'up']);
    await run('ip', ['-n', info.netns, 'link', 'set', `fnv${tag}`, 'up']);

    const join = await requestJoin(formnetUrl, key, { wgPublicKey: wg.publicKey });
    joined = true;
    address = join.address;
    const peers = join.peers.map((p) =>
      p.id === info.node ? { ...p, endpoint: `${nodeSide}:${info.wireguardPort}` } : p,
    );
    device = await bringUpMember({
      name: `fdw${tag}`,
      netns: ns,
      privateKey: wg.privateKey,
      join: { ...join, peers },
      logger,
    });
  } catch (err) {
    await close();
    throw err;
  }
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([`${info.dns.host}:${info.dns.port}`]);
  return {
    netns: ns,
    address,
    info,
    async resolve(host: string): Promise<string> {
      if (isIPv4(host)) return host;
      const fqdn = host.includes('.') ? host : `${host}.${info.domain}`;
      try {
        const [ip] = await resolver.resolve4(fqdn);
        if (ip) return ip;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== 'ENOTFOUND' && code !== 'ENODATA') {
          throw new FormError(
            'NET_ERROR',
            `Cannot resolve ${fqdn}: the node's DNS answered ${code ?? (err as Error).message}`,
          );
        }
      }
      throw new FormError('INSTANCE_NOT_FOUND', `Cannot resolve ${fqdn}: no instance has that name on this network`, {
        hint: 'List your instances with `form manage list`; names are <Formfile NAME>.' + info.domain,
      });
    },
    close,
  };
}
