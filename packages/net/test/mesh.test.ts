import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { generateKeyPair, generateWireGuardKeyPair, type KeyPair, type WireGuardKeyPair } from '@formation/identity';
import { type ApiServer, createLogger } from '@formation/service';
import {
  bringUpMember,
  connectToBridge,
  createBridgeNetns,
  createFormnetService,
  createNetns,
  deleteNetns,
  desiredPeers,
  type FormnetMember,
  MemoryFormnetState,
  type NodeFormnet,
  reconcile,
  requestJoin,
  routeGet,
  startNodeFormnet,
  type WireGuardDevice,
} from '../src/index.ts';
import { missingPrerequisite, skipUnlessIntegration } from './integration.ts';

// Real WireGuard (wireguard-go) between network namespaces this test creates:
//   <p>-br (bridge) ── <p>-n1, <p>-n2, <p>-n3 (nodes, 192.168.201.1-3) and <p>-dev (developer, .10)
// Everything is named with a per-process prefix and removed in `after`, even when a test fails.
const P = `fnt${process.pid % 100000}`;
const logger = createLogger(process.env.FORM_LOG_LEVEL ?? 'silent');
const skip = skipUnlessIntegration();
const sh = promisify(execFile);

interface Node {
  ns: string;
  key: KeyPair;
  wg: WireGuardKeyPair;
  ip: string;
  dev?: WireGuardDevice;
  fn?: NodeFormnet;
  member?: FormnetMember;
}

const state = new MemoryFormnetState();
const nodes: Node[] = [1, 2, 3].map((i) => ({
  ns: `${P}-n${i}`,
  key: generateKeyPair(),
  wg: generateWireGuardKeyPair(),
  ip: `192.168.201.${i}`,
}));
const devices: WireGuardDevice[] = [];

/** Make node `n` a formnet member at its current underlay address (again after the address moved). */
async function register(n: Node): Promise<void> {
  n.member = await state.upsertMember({
    id: n.key.address,
    kind: 'node',
    wgPublicKey: n.wg.publicKey,
    endpoint: `${n.ip}:51820`,
  });
}
let api: ApiServer | undefined;

async function cleanup(): Promise<void> {
  await api?.close().catch(() => undefined);
  for (const d of devices) await d.destroy().catch(() => undefined);
  for (const ns of [...nodes.map((n) => n.ns), `${P}-dev`, `${P}-br`]) await deleteNetns(ns);
}

before(async () => {
  if (skip || missingPrerequisite()) return;
  await cleanup();
  await createBridgeNetns(`${P}-br`, 'fbr0');
  let i = 0;
  for (const n of nodes) {
    i++;
    await createNetns(n.ns);
    await connectToBridge({
      bridgeNetns: `${P}-br`,
      bridge: 'fbr0',
      netns: n.ns,
      bridgeSide: `${P}b${i}`.slice(-15),
      tempName: `${P}t${i}`.slice(-15),
      address: `${n.ip}/24`,
    });
    await register(n);
  }
  await createNetns(`${P}-dev`);
  await connectToBridge({
    bridgeNetns: `${P}-br`,
    bridge: 'fbr0',
    netns: `${P}-dev`,
    bridgeSide: `${P}bd`.slice(-15),
    tempName: `${P}td`.slice(-15),
    address: '192.168.201.10/24',
  });
});
after(cleanup);

async function ping(ns: string, ip: string, tries = 20): Promise<void> {
  let last = '';
  for (let t = 0; t < tries; t++) {
    try {
      await sh('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W1', ip]);
      return;
    } catch (err) {
      last = String((err as { stderr?: string }).stderr ?? err);
    }
  }
  throw new Error(`no ping reply from ${ip} in ${ns}: ${last}`);
}

/** ping that must fail; returns its stderr. */
async function pingFails(ns: string, ip: string): Promise<string> {
  try {
    await sh('ip', ['netns', 'exec', ns, 'ping', '-c1', '-W1', ip]);
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? '');
  }
  throw new Error(`ping ${ip} from ${ns} unexpectedly succeeded`);
}

async function reconcileAll(): Promise<void> {
  const members = await state.listMembers();
  for (const n of nodes) if (n.fn) await n.fn.reconcileNow();
  assert.ok(members.length >= 2);
}

test('namespace prerequisites', { skip }, () => {
  const why = missingPrerequisite();
  assert.equal(why, undefined, `FORM_REQUIRE_INTEGRATION=1 but ${why}`);
});

test('three nodes: wireguard-go interfaces in namespaces, ping between every pair over formnet', { skip }, async () => {
  assert.equal(missingPrerequisite(), undefined);
  let i = 0;
  for (const n of nodes) {
    i++;
    // What the node daemon calls: interface + leak guard + peers from state.
    n.fn = await startNodeFormnet({
      name: `${P}w${i}`.slice(-15),
      netns: n.ns,
      privateKey: n.wg.privateKey,
      listenPort: 51820,
      selfId: n.key.address,
      address: n.member!.address,
      state,
      intervalMs: 0,
      logger,
    });
    n.dev = n.fn.device;
    devices.push(n.dev);
    assert.equal(n.dev.implementation, 'userspace', 'this host has no kernel WireGuard');
    assert.ok(n.dev.pid && n.dev.pid > 0, 'we own the wireguard-go PID');
  }
  await reconcileAll();
  const shown = await nodes[0]!.dev!.show();
  assert.equal(shown.listenPort, 51820);
  assert.equal(shown.peers.length, 2);
  for (const a of nodes) for (const b of nodes) if (a !== b) await ping(a.ns, b.member!.address);
  // A second reconcile with the same state changes nothing.
  const again = await reconcile(nodes[0]!.dev!, desiredPeers(nodes[0]!.key.address, await state.listMembers()));
  assert.deepEqual(again.peers, { add: [], update: [], remove: [] });
  assert.deepEqual(again.routes, { add: [], remove: [] });
});

test('leak guard: an unassigned formnet address is refused locally', { skip }, async () => {
  const n1 = nodes[0]!;
  assert.ok(n1.dev, 'mesh is up');
  assert.deepEqual(await routeGet('10.200.7.7', n1.ns), { type: 'unreachable' });
  assert.equal((await routeGet(nodes[1]!.member!.address, n1.ns)).dev, n1.dev.name);
  const t = Date.now();
  const err = await pingFails(n1.ns, '10.200.7.7');
  // An `unreachable` route answers EHOSTUNREACH; ENETUNREACH would mean no route at all.
  assert.match(err, /No route to host|Network is unreachable/);
  assert.ok(Date.now() - t < 900, 'refused at once, not after a timeout');
});

test(
  'one bad peer does not stop the others: unresolvable endpoint, foreign routes, a stolen key',
  { skip },
  async () => {
    const [n1, n2] = nodes as [Node, Node, Node];
    assert.ok(n1.dev && n2.dev, 'mesh is up');
    const before = (await n1.dev.show()).peers;
    const fresh = generateWireGuardKeyPair().publicKey;
    const good = { publicKey: fresh, endpoint: '192.168.201.99:51820', allowedIps: ['10.128.250.1/32'] };
    const bad = [
      // wg resolves endpoints itself and fails the whole `wg set` on this one
      {
        publicKey: generateWireGuardKeyPair().publicKey,
        endpoint: 'no-such-peer.invalid:51820',
        allowedIps: ['10.128.250.2/32'],
      },
      { publicKey: generateWireGuardKeyPair().publicKey, endpoint: '192.168.201.98:51820', allowedIps: ['0.0.0.0/0'] },
      { publicKey: generateWireGuardKeyPair().publicKey, allowedIps: ['192.168.201.0/24'] },
      { publicKey: n2.wg.publicKey, endpoint: '192.168.201.97:51820', allowedIps: ['10.128.250.3/32'] },
    ];
    const n2peer = before.find((p) => p.publicKey === n2.wg.publicKey);
    assert.ok(n2peer);
    await n1.dev.setPeers([n2peer, ...bad, good]).catch(() => undefined);
    const after = new Map((await n1.dev.show()).peers.map((p) => [p.publicKey, p]));
    assert.deepEqual(after.get(fresh)?.allowedIps, ['10.128.250.1/32'], 'the good peer of the batch is applied');
    assert.equal(after.get(bad[1]?.publicKey as string), undefined, 'no peer routes 0.0.0.0/0');
    assert.equal(after.get(bad[2]?.publicKey as string), undefined, 'no peer routes the underlay');
    assert.deepEqual(after.get(n2.wg.publicKey)?.endpoint, n2peer.endpoint, 'a repeated key does not move a member');
    // the unresolvable one is kept without an endpoint (it may still dial in)
    assert.equal(after.get(bad[0]?.publicKey as string)?.endpoint, undefined);
    await ping(n1.ns, n2.member!.address, 3);
    await n1.dev.setPeers([], [fresh, bad[0]?.publicKey as string]);
  },
);

test('peers are removed, re-added and moved live, without restarting the interface', { skip }, async () => {
  const [n1, n2, n3] = nodes as [Node, Node, Node];
  assert.ok(n1.dev && n2.dev && n3.dev, 'mesh is up');
  const pid = n1.dev.pid;
  await state.removeMember(n3.key.address);
  await reconcileAll();
  assert.equal((await n1.dev.show()).peers.length, 1);
  assert.match(
    await pingFails(n1.ns, n3.member!.address),
    /No route to host|Network is unreachable/,
    'removed peer hits the leak guard',
  );
  await ping(n1.ns, n2.member!.address, 3);

  await register(n3);
  await reconcileAll();
  await ping(n1.ns, n3.member!.address);

  // Node 2's underlay address changes: the new endpoint propagates through state.
  // (Delete first: removing a primary address also removes secondaries in its subnet.)
  await sh('ip', ['-n', n2.ns, 'address', 'del', `${n2.ip}/24`, 'dev', 'eth0']);
  await sh('ip', ['-n', n2.ns, 'address', 'add', '192.168.201.42/24', 'dev', 'eth0']);
  n2.ip = '192.168.201.42';
  await register(n2);
  await reconcileAll();
  const p2 = (await n1.dev.show()).peers.find((p) => p.publicKey === n2.wg.publicKey);
  assert.equal(p2?.endpoint, '192.168.201.42:51820');
  await ping(n1.ns, n2.member!.address);
  await ping(n3.ns, n2.member!.address);
  assert.equal(n1.dev.pid, pid, 'same wireguard-go process throughout');
});

test(
  'a developer joins through the join API and reaches every node; a bad signature is refused',
  { skip },
  async () => {
    const [n1] = nodes as [Node];
    assert.ok(n1.dev, 'mesh is up');
    // The node daemon would do this: serve the join API and reconcile its interface on every change.
    api = await createFormnetService({ state, logger, onChange: () => reconcileAll() });
    await api.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;

    const dev = generateKeyPair();
    const devWg = generateWireGuardKeyPair();
    const join = await requestJoin(url, dev, { wgPublicKey: devWg.publicKey });
    assert.equal(join.peers.length, 3);
    const devIf = await bringUpMember({
      name: `${P}wd`.slice(-15),
      netns: `${P}-dev`,
      privateKey: devWg.privateKey,
      join,
      logger,
    });
    devices.push(devIf);
    for (const n of nodes) await ping(`${P}-dev`, n.member!.address);
    assert.deepEqual(await routeGet('10.250.0.1', `${P}-dev`), { type: 'unreachable' }, 'developer has the leak guard');

    // Bad signature over real HTTP: 401, and no member added.
    const before = (await state.listMembers()).length;
    const body = JSON.stringify({ wgPublicKey: generateWireGuardKeyPair().publicKey });
    const forged = await fetch(`${url}/join`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/json',
        'x-form-public-key': generateKeyPair().publicKey,
        'x-form-timestamp': String(Date.now()),
        'x-form-nonce': 'abc',
        'x-form-signature': '00'.repeat(64),
      },
    });
    assert.equal(forged.status, 401);
    assert.equal((await state.listMembers()).length, before);
  },
);

test('destroy removes the interface, the process and the socket', { skip }, async () => {
  const d = devices.pop();
  assert.ok(d, 'an interface to remove');
  const pid = d.pid!;
  await d.destroy();
  assert.throws(() => process.kill(pid, 0), 'wireguard-go process is gone');
  const { stdout } = await sh('ip', ['-n', d.netns!, '-j', 'link', 'show']);
  assert.equal(
    (JSON.parse(stdout) as { ifname: string }[]).some((l) => l.ifname === d.name),
    false,
  );
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync(`/var/run/wireguard/${d.name}.sock`), false);
});
