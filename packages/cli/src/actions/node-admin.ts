import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';

/** The state API's GET /network (see @formation/state README, "Admission"). */
interface NetworkView {
  genesis: string | null;
  name: string | null;
  policy: 'admins' | 'open' | 'legacy-open';
  admins: string[];
  quotas: { instancesPerAccount: number; replicasPerAccount: number };
  pending: string[];
}
interface NodeRow {
  id: string;
  address: string;
  name: string | null;
  endpoint: string;
  formnetRange: string;
}

interface Common {
  node?: string;
  key?: string;
  json?: boolean;
}

const PUBKEY = /^0[23][0-9a-f]{64}$/;
const SLICE = /^10\.(1(29|[3-9][0-9])|2[0-5][0-9])\.([0-9]{1,3})\.0\/24$/;

async function signer(opts: Common) {
  if (!opts.key) return developerKey();
  const { loadKey } = await import('@formation/identity');
  return loadKey(opts.key);
}

async function api(opts: Common) {
  const url = await serviceUrl('state', opts.node);
  const { ApiClient } = await import('@formation/service/client');
  const { httpStateClient } = await import('@formation/state/client');
  return { url, http: new ApiClient(url), state: httpStateClient(url) };
}

/**
 * The lowest free /24 slice for a node: above every admitted node's slice in 10.129.0.0/16 onwards.
 * Pure: exported for tests.
 */
export function nextFreeSlice(taken: readonly string[]): string {
  const used = new Set(taken.filter(Boolean));
  for (let second = 129; second <= 255; second++) {
    for (let third = 0; third <= 255; third++) {
      const c = `10.${second}.${third}.0/24`;
      if (!used.has(c)) return c;
    }
  }
  throw new FormError('CONFLICT', 'Cannot find a free formnet slice: every /24 of 10.129.0.0-10.255.255.0 is taken');
}

function checkKey(what: string, k: string): void {
  if (!PUBKEY.test(k)) {
    throw new FormError('CLI_USAGE', `Cannot ${what} ${k}: not a node key (66 hex characters starting 02 or 03)`, {
      hint: 'A node prints its key when it waits for admission; `form node list` shows keys waiting.',
    });
  }
}

async function requireAdmin(net: NetworkView, me: string, what: string): Promise<void> {
  if (net.policy !== 'admins') {
    throw new FormError('CONFLICT', `Cannot ${what}: this network's admission policy is ${net.policy}, not admins`, {
      hint: 'Open networks count every registered node; there is nothing to admit.',
    });
  }
  if (!net.admins.includes(me)) {
    throw new FormError(
      'AUTH_FORBIDDEN',
      `Cannot ${what}: your key ${me.slice(0, 12)}… is not an admin of this network`,
      {
        hint: `Admins: ${net.admins.map((a) => `${a.slice(0, 12)}…`).join(', ')}. Use --key with an admin's key file.`,
      },
    );
  }
}

/** `form node admit <key> [--range 10.129.N.0/24]`: an admin gives a node a slice of formnet. */
export async function nodeAdmit(nodeKey: string, opts: Common & { range?: string }): Promise<number> {
  checkKey('admit', nodeKey);
  if (opts.range !== undefined && !SLICE.test(opts.range)) {
    throw new FormError('CLI_USAGE', `Cannot admit with --range ${opts.range}: give a /24 like 10.129.7.0/24`, {
      hint: 'Node slices are /24s inside formnet, from 10.129.0.0 up (10.128.0.0/16 holds member addresses).',
    });
  }
  const key = await signer(opts);
  const { http, state } = await api(opts);
  const net = await http.get<NetworkView>('/network');
  await requireAdmin(net, key.publicKey, `admit ${nodeKey.slice(0, 12)}…`);
  const nodes = await http.get<NodeRow[]>('/nodes');
  const already = nodes.find((n) => n.id === nodeKey);
  const range = opts.range ?? already?.formnetRange ?? nextFreeSlice(nodes.map((n) => n.formnetRange));
  const clash = nodes.find((n) => n.id !== nodeKey && n.formnetRange === range);
  if (clash) {
    throw new FormError('CONFLICT', `Cannot admit with ${range}: node ${clash.id.slice(0, 12)}… holds that slice`, {
      hint: 'Leave out --range to take the next free slice.',
    });
  }
  const op = await state.author(key, 'node.admit', { node: nodeKey, formnetRange: range });
  if (opts.json) printJson({ node: nodeKey, formnetRange: range, op: op.hash });
  else process.stdout.write(`${pc.green('admitted')} ${nodeKey} with formnet slice ${range}\n`);
  return 0;
}

/** `form node remove <key>`: an admin removes a node; its replicas are placed elsewhere. */
export async function nodeRemove(nodeKey: string, opts: Common): Promise<number> {
  checkKey('remove', nodeKey);
  const key = await signer(opts);
  const { http, state } = await api(opts);
  const net = await http.get<NetworkView>('/network');
  await requireAdmin(net, key.publicKey, `remove ${nodeKey.slice(0, 12)}…`);
  const op = await state.author(key, 'node.remove', { node: nodeKey });
  if (opts.json) printJson({ node: nodeKey, removed: true, op: op.hash });
  else
    process.stdout.write(
      `${pc.yellow('removed')} ${nodeKey}: it no longer places, claims, reports or routes; its replicas move\n`,
    );
  return 0;
}

/** `form node list`: the network (genesis, policy, admins), its admitted nodes and those waiting. */
export async function nodeList(opts: Common): Promise<number> {
  const { http } = await api(opts);
  const [net, nodes] = await Promise.all([http.get<NetworkView>('/network'), http.get<NodeRow[]>('/nodes')]);
  if (opts.json) {
    printJson({ network: net, nodes, pending: net.pending });
    return 0;
  }
  const out = process.stdout;
  out.write(`network ${net.name ?? '(unnamed)'}  policy ${net.policy}  genesis ${net.genesis ?? 'none'}\n`);
  out.write(`admins  ${net.admins.join(', ') || '-'}\n`);
  out.write(
    `quotas  ${net.quotas.instancesPerAccount} instances, ${net.quotas.replicasPerAccount} replicas per account\n\n`,
  );
  for (const n of nodes)
    out.write(`${pc.green('admitted')}  ${n.id}  ${n.formnetRange || '(slice in conflict)'}  ${n.endpoint}\n`);
  for (const p of net.pending) out.write(`${pc.yellow('waiting')}   ${p}  admit with: form node admit ${p}\n`);
  return 0;
}
