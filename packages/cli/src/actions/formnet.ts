import { FormError } from '@formation/interface';
import { leaveIfCurrent, memberDown, memberStatus, memberUp, type ResolverPlan, requestJoin } from '@formation/net';
import { formnetPaths, nodeInfo, reapFormnetSessions, requireNetAdmin, sessionLogger } from '../formnet-session.ts';
import { developerKey, serviceClient } from '../node-client.ts';
import { printError, printJson } from '../output.ts';

function resolverText(r: ResolverPlan | null): string {
  if (!r) return '  names:     not configured (no formnet domain)\n';
  if (r.kind === 'resolvectl') return `  names:     *.${r.domain} via ${r.server} (resolvectl, ${r.iface} only)\n`;
  if (r.kind === 'netns-resolv') {
    return `  names:     *.${r.domain} via ${r.server} in ${r.path} (for commands started with \`ip netns exec ${r.netns}\` from now on)\n`;
  }
  return `  names:     not configured here; to resolve *.${r.domain}, add to your resolver:\n    ${r.line}\n`;
}

/**
 * `form formnet up`: join formnet permanently from this machine (stable key and address, interface
 * `formnet0`, every node a peer at its public endpoint, keepalive 25 s, resolver for the domain).
 * Idempotent: run again, it reconciles peers from a fresh join answer.
 */
export function formnetUp(opts: {
  node?: string;
  interface?: string;
  resolver?: boolean;
  json?: boolean;
}): Promise<number> {
  return joinFormnet(opts, (s) => process.stdout.write(s));
}

async function joinFormnet(
  opts: { node?: string; interface?: string; resolver?: boolean; json?: boolean },
  write: (s: string) => void,
): Promise<number> {
  requireNetAdmin('join formnet');
  const logger = sessionLogger();
  await reapFormnetSessions(logger);
  const info = await nodeInfo(opts.node);
  if (!info.wireguardEndpoint) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      `Cannot join formnet through ${info.node}: the node has no public WireGuard endpoint`,
      {
        hint: 'Start the node with `form node up --public-address <ip>`, or point at one that has it with --node.',
      },
    );
  }
  const key = await developerKey();
  const client = await serviceClient('formnet', { node: opts.node });
  const paths = formnetPaths();
  const r = await memberUp({
    file: paths.member,
    iface: opts.interface ?? process.env.FORM_FORMNET_INTERFACE,
    logFile: paths.wireguardLog,
    nodeUrl: client.baseUrl,
    node: { id: info.node, endpoint: info.wireguardEndpoint, formnetAddress: info.formnetAddress },
    domain: info.domain,
    join: (wgPublicKey) => requestJoin(client, key, { wgPublicKey }),
    resolver: opts.resolver,
    logger,
  });
  if (opts.json) {
    printJson({ ok: true, ...r, domain: info.domain, node: info.node });
    return 0;
  }
  write(
    `formnet ${r.created ? 'up' : 'already up (peers reconciled)'}: ${r.address} on ${r.iface}\n` +
      `  node:      ${info.node} at ${info.wireguardEndpoint} (formnet ${info.formnetAddress})\n` +
      `  peers:     ${r.peers}\n` +
      resolverText(r.resolver) +
      `  try:       ssh <user>@<name>.${info.domain}   (form formnet status, form formnet down)\n`,
  );
  return 0;
}

/** `form kit init --join-formnet`: join after writing the config; a failure is reported, never fatal. */
export async function formnetUpAfterInit(): Promise<void> {
  try {
    // On stderr: `kit init --json` keeps its stdout one JSON value.
    await joinFormnet({}, (s) => process.stderr.write(s));
  } catch (err) {
    printError(err, false);
    process.stderr.write('formnet: not joined yet; run `form formnet up` (as root) when the node is reachable\n');
  }
}

/** `form formnet down`: signed leave, interface and wireguard-go gone, resolver undone; the key is kept. */
export async function formnetDown(opts: { json?: boolean }): Promise<number> {
  requireNetAdmin('leave formnet');
  const logger = sessionLogger();
  const r = await memberDown({
    file: formnetPaths().member,
    logger,
    leave: async (wgPublicKey, up) =>
      leaveIfCurrent(await serviceClient('formnet', { node: up.nodeUrl }), await developerKey(), wgPublicKey),
  });
  if (opts.json) printJson({ ok: true, ...r });
  else if (!r.wasUp) process.stdout.write('formnet: not joined from this machine (nothing to do)\n');
  else {
    process.stdout.write(
      `formnet down: ${r.iface} removed${r.left ? ', left the network' : ''}\n` +
        (r.leaveError ? `  the node was not told (${r.leaveError}); it drops the peer when you join again\n` : ''),
    );
  }
  return 0;
}

function ago(unix: number): string {
  if (!unix) return 'never';
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  return s < 120 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/** `form formnet status`: the permanent membership (interface, address, peers and handshakes, domain). */
export async function formnetStatus(opts: { json?: boolean }): Promise<number> {
  const reaped = await reapFormnetSessions().catch(() => []);
  const s = await memberStatus(formnetPaths().member);
  if (opts.json) {
    printJson({ ok: true, ...s, reapedSessions: reaped });
    return 0;
  }
  for (const r of reaped) process.stdout.write(`reaped a left-over temporary session (${r.iface})\n`);
  if (!s.configured) {
    process.stdout.write(
      'formnet: not joined from this machine (`form formnet up` joins; `form ssh` joins per session)\n',
    );
    return 0;
  }
  process.stdout.write(
    `formnet: ${s.running ? 'up' : 'DOWN (interface gone; run `form formnet up`)'}\n` +
      `  interface: ${s.iface}   address: ${s.address}   key: ${s.wgPublicKey}\n` +
      `  domain:    ${s.domain ?? '-'} (DNS ${s.dnsServer}:53)\n` +
      resolverText(s.resolver ?? null) +
      `  peers:\n` +
      s.peers
        .map(
          (p) =>
            `    ${p.publicKey}  ${p.endpoint ?? '(no endpoint)'}  ${p.allowedIps.join(',')}  handshake ${ago(p.latestHandshake)}\n`,
        )
        .join(''),
  );
  return s.running ? 0 : 1;
}
