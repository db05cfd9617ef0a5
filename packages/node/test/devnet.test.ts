// A real 3-node devnet (formationd processes, namespaces, wireguard-go): state replication, formnet
// mesh, catch-up after a stop, underlay partition, refused joins. One devnet shared by the file.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { generateKeyPair, generateWireGuardKeyPair, signRequest } from '@formation/identity';
import { namespacesLeft, requireOrSkip, tempDevnet, until } from '@formation/interface/testing';
import { bringUpMember, requestJoin, type WireGuardDevice } from '@formation/net';
import { createLogger } from '@formation/service';
import { createOp } from '@formation/state';
import {
  type DevnetNode,
  type DevnetState,
  devnetDown,
  devnetStatus,
  devnetUp,
  serviceBase,
  setUnderlayLink,
  startDevnetNode,
  stopDevnetNode,
  waitConverged,
} from '../src/devnet.ts';

const run = promisify(execFile);
const PREFIX = 'fdt';

const skip = requireOrSkip('devnet test', { root: true, programs: ['ip', 'wg', 'wireguard-go', 'ping'] });

async function json<T>(url: string, init?: RequestInit): Promise<{ status: number; body: T }> {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: (await r.json()) as T };
}

async function ping(netns: string, ip: string): Promise<boolean> {
  try {
    await run('ip', ['netns', 'exec', netns, 'ping', '-c', '1', '-W', '2', ip]);
    return true;
  } catch {
    return false;
  }
}

/** All running nodes report the same digest (heartbeats keep changing it, so poll for an equal moment). */
async function sameDigest(s: DevnetState, timeoutMs = 30_000): Promise<string> {
  return until(
    'equal digests',
    async () => {
      const rows = (await devnetStatus(s.dir)) ?? [];
      const up = rows.filter((r) => r.running);
      const d = new Set(up.map((r) => r.digest));
      return up.length > 0 && d.size === 1 && up[0]?.digest ? up[0].digest : undefined;
    },
    timeoutMs,
  );
}

async function submitAt(s: DevnetState, nodeIdx: number): Promise<string> {
  const key = generateKeyPair();
  const node = s.nodes[nodeIdx];
  assert.ok(node);
  const heads = (await json<{ heads: string[] }>(`${serviceBase(node, 'state')}/heads`)).body.heads;
  const op = createOp(key, 'account.update', { name: `t${Date.now() % 100000}` }, heads);
  const r = await json<{ status: string; hash: string }>(`${serviceBase(node, 'state')}/ops`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(op),
  });
  assert.equal(r.status, 201, `op accepted at ${node.name}: ${JSON.stringify(r.body)}`);
  return op.hash;
}

async function hasOp(s: DevnetState, nodeIdx: number, hash: string): Promise<boolean> {
  const node = s.nodes[nodeIdx];
  if (!node) return false;
  const r = await fetch(`${serviceBase(node, 'state')}/ops/${hash}`, { signal: AbortSignal.timeout(3000) });
  await r.body?.cancel();
  return r.status === 200;
}

describe('devnet: 3 real nodes in namespaces', { skip }, () => {
  const devnet = tempDevnet(
    'form-devnet-',
    (dir) =>
      devnetUp({
        nodes: 3,
        dir,
        prefix: PREFIX,
        portBase: 140,
        env: { FORM_HEARTBEAT_MS: '2000', FORM_LOG_LEVEL: 'info' },
      }),
    devnetDown,
  );
  let s: DevnetState;
  const devNs = `${PREFIX}dv`;
  let dev: WireGuardDevice | undefined;

  before(async () => {
    s = await devnet.up();
  });

  after(async () => {
    await dev?.destroy().catch(() => undefined);
    await run('ip', ['netns', 'del', devNs]).catch(() => undefined);
    if (devnet.dir) {
      const r = await devnet.down();
      assert.deepEqual(await namespacesLeft(PREFIX), [], 'namespaces left');
      assert.ok(r, 'devnet down answered');
      assert.ok(r.namespaces.length >= 4);
    }
  });

  it('every node sees all three nodes registered, with their formnet addresses', async () => {
    const rows = await devnetStatus(devnet.dir);
    assert.equal(rows?.length, 3);
    for (const r of rows ?? []) {
      assert.ok(r.running, `${r.name} runs`);
      assert.match(r.formnetAddress ?? '', /^10\.128\./);
    }
    assert.equal(new Set(rows?.map((r) => r.formnetAddress)).size, 3, 'distinct formnet addresses');
    for (const n of s.nodes) {
      const nodes = (await json<unknown[]>(`${serviceBase(n, 'state')}/nodes`)).body;
      assert.equal(nodes.length, 3, `${n.name} lists 3 nodes`);
    }
  });

  it('an op submitted at node 1 reaches every node; all converge to one digest', async () => {
    const hash = await submitAt(s, 0);
    for (const i of [1, 2]) await until(`op at node${i + 1}`, () => hasOp(s, i, hash), 10_000);
    assert.match(await sameDigest(s), /^[0-9a-f]{64}$/);
  });

  it('formnet: every node pings every other over WireGuard (underlay only inside the namespaces)', async () => {
    const addrs = s.nodes.map((n) => n.info?.formnetAddress as string);
    for (const from of s.nodes) {
      for (const [j, to] of addrs.entries()) {
        if (s.nodes[j] === from) continue;
        await until(`${from.name} -> ${to}`, () => ping(from.netns, to), 15_000);
      }
    }
    // The traffic went through a WireGuard interface (the route to a peer is on fwg*).
    const route = (await run('ip', ['-n', s.nodes[0]?.netns as string, 'route', 'get', addrs[1] as string])).stdout;
    assert.match(route, /dev fwg/);
  });

  it('a developer peer on the underlay joins at node 1 and reaches every node', async () => {
    await run('ip', ['netns', 'add', devNs]);
    await run('ip', ['-n', devNs, 'link', 'set', 'lo', 'up']);
    await run('ip', ['link', 'add', `${PREFIX}dvb`, 'type', 'veth', 'peer', 'name', `${PREFIX}dvt`]);
    await run('ip', ['link', 'set', `${PREFIX}dvb`, 'netns', s.bridgeNetns]);
    await run('ip', ['link', 'set', `${PREFIX}dvt`, 'netns', devNs]);
    await run('ip', ['-n', s.bridgeNetns, 'link', 'set', `${PREFIX}dvb`, 'master', 'dnbr0']);
    await run('ip', ['-n', s.bridgeNetns, 'link', 'set', `${PREFIX}dvb`, 'up']);
    await run('ip', ['-n', devNs, 'addr', 'add', '192.168.77.200/24', 'dev', `${PREFIX}dvt`]);
    await run('ip', ['-n', devNs, 'link', 'set', `${PREFIX}dvt`, 'up']);
    const key = generateKeyPair();
    const wg = generateWireGuardKeyPair();
    const node1 = s.nodes[0];
    assert.ok(node1);
    const join = await requestJoin(serviceBase(node1, 'formnet'), key, {
      wgPublicKey: wg.publicKey,
      endpoint: '192.168.77.200:51999',
    });
    assert.match(join.address, /^10\.128\./);
    assert.equal(join.peers.filter((p) => p.endpoint?.startsWith('192.168.77.')).length, 3);
    dev = await bringUpMember({
      name: `${PREFIX}dwg${process.pid % 1000}`,
      netns: devNs,
      privateKey: wg.privateKey,
      listenPort: 51999,
      join,
      logger: createLogger('silent'),
    });
    for (const n of s.nodes) {
      await until(`developer -> ${n.name}`, () => ping(devNs, n.info?.formnetAddress as string), 15_000);
    }
  });

  it('a join request with a bad signature is refused (401) and records nothing', async () => {
    const node2 = s.nodes[1];
    assert.ok(node2);
    const key = generateKeyPair();
    const wg = generateWireGuardKeyPair();
    const body = JSON.stringify({ wgPublicKey: wg.publicKey });
    // Signed over a different body: the signature does not match what is sent.
    const audience = (await json<{ identity: string }>(`${serviceBase(node2, 'formnet')}/identity`)).body.identity;
    const headers = signRequest(key, {
      method: 'POST',
      path: '/join',
      body: JSON.stringify({ wgPublicKey: 'x' }),
      audience,
    });
    const before = (await json<unknown[]>(`${serviceBase(node2, 'state')}/formnet/peers`)).body.length;
    const r = await fetch(`${serviceBase(node2, 'formnet')}/join`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body,
    });
    assert.equal(r.status, 401);
    const unsigned = await fetch(`${serviceBase(node2, 'formnet')}/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(unsigned.status, 401);
    const afterCount = (await json<unknown[]>(`${serviceBase(node2, 'state')}/formnet/peers`)).body.length;
    assert.equal(afterCount, before);
  });

  it('a forged op (body changed after signing) is refused at node 1 and never reaches the others', async () => {
    const node1 = s.nodes[0];
    assert.ok(node1);
    const key = generateKeyPair();
    const heads = (await json<{ heads: string[] }>(`${serviceBase(node1, 'state')}/heads`)).body.heads;
    const op = createOp(key, 'account.update', { name: 'honest' }, heads);
    const forged = { ...op, body: { name: 'forged' }, hash: undefined };
    const r = await fetch(`${serviceBase(node1, 'state')}/ops`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(forged),
    });
    assert.equal(r.status, 401);
    // A real op sent afterwards arrives everywhere; the forged one is nowhere, and digests agree.
    const real = await submitAt(s, 0);
    for (const i of [1, 2]) await until(`real op at node${i + 1}`, () => hasOp(s, i, real), 10_000);
    const accounts = (
      await json<Array<{ publicKey: string; name: string | null }>>(
        `${serviceBase(s.nodes[2] as DevnetNode, 'state')}/accounts`,
      )
    ).body;
    assert.equal(
      accounts.find((a) => a.publicKey === key.publicKey),
      undefined,
    );
    await sameDigest(s);
  });

  it('a stopped node catches up on the ops written while it was down', async () => {
    const node3 = s.nodes[2];
    assert.ok(node3);
    await stopDevnetNode(s, node3);
    const hashes = [await submitAt(s, 0), await submitAt(s, 1), await submitAt(s, 0)];
    await startDevnetNode(s, node3);
    for (const h of hashes) await until(`node3 has ${h.slice(0, 8)}`, () => hasOp(s, 2, h), 20_000);
    await sameDigest(s);
    // And it is back on formnet.
    await until(
      'node1 -> node3 after restart',
      () => ping(s.nodes[0]?.netns as string, node3.info?.formnetAddress as string),
      20_000,
    );
  });

  it('an underlay partition (veth down) cuts formnet; healed, the mesh and the state converge', async () => {
    const node2 = s.nodes[1];
    const node1 = s.nodes[0];
    assert.ok(node1 && node2);
    const target = node2.info?.formnetAddress as string;
    await setUnderlayLink(s, node2, false);
    try {
      assert.equal(await ping(node1.netns, target), false, 'node 2 is unreachable while partitioned');
      // State keeps being written on both sides meanwhile.
      await submitAt(s, 0);
      await submitAt(s, 1);
    } finally {
      await setUnderlayLink(s, node2, true);
    }
    await until('node1 -> node2 after heal', () => ping(node1.netns, target), 30_000);
    await waitConverged(s);
    await sameDigest(s);
  });
});
