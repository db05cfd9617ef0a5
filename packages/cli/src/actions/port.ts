import type { KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { publicPortProblem } from '@formation/state';
import type { PortView, StateClient } from '@formation/state/client';
import pc from 'picocolors';
import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { inert } from './inert.ts';
import { resolveInstance } from './manage.ts';

// `form port add|list|rm`: plain TCP ports on every node's public address for an instance (issue 19).
// The cores take a StateClient and a key, so tests run them against a real in-process store.

interface Common {
  node?: string;
  json?: boolean;
}

/** `<public>[:<guest>]` as numbers, or CLI_USAGE saying what is wrong (the same rule the nodes apply). */
export function parseMapping(text: string): { port: number; target: number } {
  const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(text.trim());
  const port = Number(m?.[1]);
  const target = m?.[2] === undefined ? port : Number(m[2]);
  const problem = !m
    ? 'not <public>[:<guest port>]'
    : target < 1 || target > 65535
      ? `guest port ${target} is not a TCP port`
      : publicPortProblem(port);
  if (problem) {
    throw new FormError('CLI_USAGE', `Cannot map ${JSON.stringify(text)}: ${problem}`, {
      hint: 'Give a public port 1024-65535 that is not a node service port (3001-3006, 3010, 5353, 6379, 51820), e.g. 5432 or 15432:5432.',
    });
  }
  return { port, target };
}

const mine = async (state: StateClient, key: KeyPair, port: number): Promise<PortView | undefined> =>
  (await state.ports()).find((p) => p.port === port && p.owner === key.publicKey);

/** Claim `mapping` for the caller's instance `ref` (a port.claim, unless the same one is already yours); no wait. */
export async function claimPort(
  state: StateClient,
  key: KeyPair,
  ref: string,
  mapping: string,
): Promise<{ port: number; target: number }> {
  const { port, target } = parseMapping(mapping);
  const inst = await resolveInstance(state, ref, key.address);
  if (inst.owner !== key.publicKey) {
    throw new FormError('AUTH_FORBIDDEN', `Cannot map port ${port} to ${ref}: the instance is not yours`);
  }
  const have = await mine(state, key, port);
  if (!have || have.instanceId !== inst.id || have.target !== target) {
    await state.author(key, 'port.claim', { instanceId: inst.id, port, target });
  }
  return { port, target };
}

/**
 * Claim `mapping` for the caller's instance `ref` and wait up to `timeoutMs` for the nodes' grants.
 * CONFLICT when another owner holds the port (or it stays `taken`), TIMEOUT when no quorum granted it.
 */
export async function addPort(
  state: StateClient,
  key: KeyPair,
  ref: string,
  mapping: string,
  timeoutMs: number,
  pollMs = 500,
): Promise<PortView> {
  const { port } = await claimPort(state, key, ref, mapping);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await mine(state, key, port);
    if (p?.state === 'active') return p;
    if (p?.state === 'taken') {
      throw new FormError('CONFLICT', `Cannot use TCP port ${port}: another owner's claim holds it`, {
        hint: 'Pick another public port; `form port rm` this claim.',
      });
    }
    if (Date.now() >= deadline) {
      throw new FormError(
        'TIMEOUT',
        `Cannot map TCP port ${port}: the nodes did not grant it within ${Math.round(timeoutMs / 1000)} s (${p?.grantedBy.length ?? 0} grant(s))`,
        { hint: 'Grants need two nodes with a public address that see the port free; run `form port list` later.' },
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** The lines of `form port list`: public port → instance:guest port, state, grants. */
export function portLines(rows: readonly PortView[], instances: ReadonlyArray<{ id: string; name: string }>): string[] {
  const nameOf = new Map(instances.map((i) => [i.id, i.name]));
  return rows.map((p) => {
    const st = p.state === 'active' ? pc.green(p.state) : p.state === 'taken' ? pc.red(p.state) : p.state;
    return `${p.port}  → ${inert(nameOf.get(p.instanceId) ?? p.instanceId)}:${p.target}  ${st}  ${p.grantedBy.length} grant(s)`;
  });
}

async function context(opts: Common): Promise<{ state: StateClient; key: KeyPair }> {
  const url = await serviceUrl('state', opts.node);
  const { httpStateClient } = await import('@formation/state/client');
  return { state: httpStateClient(url), key: await developerKey() };
}

export async function portAdd(ref: string, mapping: string, opts: Common & { timeout?: string }): Promise<number> {
  const seconds = opts.timeout === undefined ? 30 : Number(opts.timeout);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new FormError('CLI_USAGE', `Cannot use --timeout ${opts.timeout}: give seconds (a number ≥ 0)`);
  }
  const { state, key } = await context(opts);
  const p = await addPort(state, key, ref, mapping, seconds * 1000);
  if (opts.json) printJson(p);
  else process.stdout.write(`${pc.green('ACTIVE')} every node's public address :${p.port} → ${ref}:${p.target}\n`);
  return 0;
}

export async function portList(opts: Common): Promise<number> {
  const { state, key } = await context(opts);
  const [ports, instances] = await Promise.all([state.ports(), state.instances()]);
  const rows = ports.filter((p) => p.owner === key.publicKey);
  if (opts.json) printJson(rows);
  else if (rows.length === 0) process.stdout.write('No TCP ports. Add one with `form port add <instance> <port>`.\n');
  else process.stdout.write(`${portLines(rows, instances).join('\n')}\n`);
  return 0;
}

export async function portRm(text: string, opts: Common): Promise<number> {
  const port = Number(text);
  const { state, key } = await context(opts);
  if (!Number.isInteger(port) || !(await mine(state, key, port))) {
    throw new FormError('NOT_FOUND', `Cannot release TCP port ${text}: you have no claim on it`, {
      hint: '`form port list` shows your ports.',
    });
  }
  await state.author(key, 'port.release', { port });
  if (opts.json) printJson({ port, removed: true });
  else process.stdout.write(`Released TCP port ${port}: the nodes stop listening on it.\n`);
  return 0;
}
