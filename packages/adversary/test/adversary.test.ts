// The adversary suite (issue 16): a real 2-node devnet runs an honest developer's instance (2 replicas,
// real QEMU VMs reached over WireGuard); a scripted attacker with its own keys — a stranger with any
// key, and an admitted but malicious node — then tries every attack of the issue against the nodes'
// state APIs. Afterwards the honest instance's revision, name, Formpack, routes and placement are
// intact, both nodes hold the same state, and the suite prints `N attacks tried, N refused`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  createDelegation,
  generateKeyPair,
  generateWireGuardKeyPair,
  type KeyPair,
  signRequest,
} from '@formation/identity';
import { integrationPrerequisites } from '@formation/interface';
import { namespacesLeft, until as poll, tempDevnet } from '@formation/interface/testing';
import {
  type DevnetNode,
  type DevnetState,
  devnetAdminKey,
  devnetDown,
  devnetUp,
  serviceBase,
  stateUrl,
} from '@formation/node';
import { createOp, instanceIdOf } from '@formation/state';
import { Attacker, refusedAtApi } from '../src/index.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../..', import.meta.url));
const example = join(root, 'examples/hello-server');
const formBin = join(root, 'packages/cli/bin/form.js');
const why = integrationPrerequisites('adversary suite', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'curl', 'mmdebstrap'],
});
const PREFIX = 'fdx';

interface Replica {
  node: string;
  state: string;
  formnetIp: string | null;
  revision: number;
}
interface Instance {
  id: string;
  name: string;
  owner: string;
  formpackId: string;
  createdBy: string;
  revision: number;
  revisionHash: string | null;
  replicaSet: Array<Replica & { assigned: boolean }>;
}

async function form(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [formBin, ...args], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 600_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

async function get<T>(url: string): Promise<T> {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200, `GET ${url}`);
  return (await r.json()) as T;
}

/** Poll once a second (the honest instance boots under TCG). */
const until = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number) =>
  poll(what, fn, timeoutMs, 1000);

/** A node.register body for a key that runs no honest daemon (nothing dials 127.0.0.1:9). */
const scriptedNode = (p2pPeerId: string, formnetRange: string) => ({
  capacity: { vcpu: 64, memMiB: 262144, diskGiB: 10000 },
  endpoint: '127.0.0.1:9',
  p2pPeerId,
  wgPublicKey: generateWireGuardKeyPair().publicKey,
  formnetRange,
});

const inNs = async (netns: string, cmd: string[]) =>
  (await run('ip', ['netns', 'exec', netns, ...cmd], { timeout: 20_000 })).stdout;

describe('adversary suite on a 2-node devnet', { skip: why || false }, () => {
  const home = mkdtempSync(join(tmpdir(), 'form-adversary-'));
  const devnet = tempDevnet(
    'form-adversary-devnet-',
    (dir) =>
      devnetUp({
        nodes: 2,
        dir,
        prefix: PREFIX,
        portBase: 300,
        // Boot templates (and so standbys) off: this file is about attacks on the network, not warm starts,
        // which have their own e2e files. A template build on every node (one more TCG boot and a memory
        // save each, beside the instances' VMs) cost replicas.test ~26 s of its ~136 s here.
        env: {
          FORM_HEARTBEAT_MS: '1000',
          FORM_NODE_TIMEOUT_MS: '8000',
          FORM_LOG_LEVEL: 'info',
          FORM_BOOT_SNAPSHOTS: 'false',
        },
      }),
    devnetDown,
  );
  let s: DevnetState;
  let n1: DevnetNode;
  let n2: DevnetNode;
  let url1 = '';
  let url2 = '';
  let victim: Instance;
  let victimKey: KeyPair;
  const atk = new Attacker();
  const stranger = generateKeyPair();
  const evilNode = generateKeyPair();
  const env = (n: DevnetNode) => ({ FORM_HOME: home, FORM_PORT_OFFSET: String(n.portOffset) });
  const instance = async (url = url1) => get<Instance>(`${url}/instances/${victim.id}`);

  before(async () => {
    s = await devnet.up();
    [n1, n2] = s.nodes as [DevnetNode, DevnetNode];
    url1 = stateUrl(n1);
    url2 = stateUrl(n2);
    const init = await form(['kit', 'init', '--yes'], { FORM_HOME: home });
    assert.equal(init.code, 0, init.stderr);
    const { loadKey, developerKeyPath } = await import('@formation/identity');
    victimKey = await loadKey(developerKeyPath(home));
    const build = await form(['pack', 'build', example], env(n1));
    assert.equal(build.code, 0, build.stderr);
    const ship = await form(['pack', 'ship', example, '--replicas', '2', '--json'], env(n1));
    assert.equal(ship.code, 0, ship.stderr);
    const id = (JSON.parse(ship.stdout) as { id: string }).id;
    victim = await until(
      'the honest instance running on both nodes',
      async () => {
        const i = await get<Instance>(`${url1}/instances/${id}`);
        return i.replicaSet.filter((r) => r.state === 'running' && r.formnetIp).length === 2 ? i : undefined;
      },
      300_000,
    );
    // The admin admits one more node, which turns out to be malicious (it runs no honest daemon: its ops
    // are scripted below).
    const admin = await devnetAdminKey(s);
    const { httpStateClient } = await import('@formation/state');
    await httpStateClient(url1).author(admin, 'node.admit', {
      node: evilNode.publicKey,
      formnetRange: '10.129.9.0/24',
    });
    const reg = await atk.post(
      url1,
      await atk.op(url1, evilNode, 'node.register', scriptedNode('12D3KooWEvilNode', '10.129.9.0/24')),
    );
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
  });

  after(async () => {
    process.stdout.write(`# adversary: ${atk.summary()}\n`);
    for (const r of atk.records)
      process.stdout.write(`#   ${r.refused ? 'refused' : 'NOT REFUSED'}: ${r.name} — ${r.how}\n`);
    await devnet.down();
    if (process.env.FORM_KEEP_TEST_DATA !== '1') rmSync(home, { recursive: true, force: true });
    assert.deepEqual(await namespacesLeft(PREFIX), [], 'namespaces left');
  });

  test('takeover: any key registers, claims the instance and commits a revision of its choice', async () => {
    const reg = await atk.post(
      url1,
      await atk.op(url1, stranger, 'node.register', scriptedNode('12D3KooWStranger', '10.129.66.0/24')),
    );
    assert.ok(reg.status < 300, 'registering is allowed (it grants nothing)');
    const claim = await atk.post(
      url1,
      await atk.op(url1, stranger, 'instance.claim', { instanceId: victim.id, node: stranger.publicKey }, [
        (await instance()).createdBy,
      ]),
    );
    const commit = await atk.post(
      url1,
      await atk.op(url1, stranger, 'instance.commit', {
        instanceId: victim.id,
        revision: Number.MAX_SAFE_INTEGER,
        hash: 'ee'.repeat(32),
      }),
    );
    const after = await instance();
    const intact = after.revision === victim.revision && !after.replicaSet.some((r) => r.node === stranger.publicKey);
    atk.record(
      'stranger commits MAX_SAFE_INTEGER',
      refusedAtApi(commit) && intact,
      `commit ${commit.status} ${commit.body.error?.code}; claim ${claim.status} not counted`,
    );
    assert.ok(refusedAtApi(commit), JSON.stringify(commit.body));
    assert.ok(intact, 'revision and replicas unchanged');
  });

  test('an admitted but malicious node claims the instance and commits: a claim grants nothing over content', async () => {
    const create = (await instance()).createdBy;
    const claim = await atk.post(
      url1,
      await atk.op(url1, evilNode, 'instance.claim', { instanceId: victim.id, node: evilNode.publicKey }, [create]),
    );
    const claimHash = claim.body.hash as string;
    const commit = await atk.post(
      url1,
      await atk.op(
        url1,
        evilNode,
        'instance.commit',
        { instanceId: victim.id, revision: 99, hash: 'dd'.repeat(32) },
        [claimHash, create].filter(Boolean),
      ),
    );
    const after = await instance();
    atk.record(
      'admitted node commits a revision',
      refusedAtApi(commit) && after.revision === victim.revision,
      `commit ${commit.status} ${commit.body.error?.code}`,
    );
    assert.ok(refusedAtApi(commit), JSON.stringify(commit.body));
    assert.equal(after.revision, victim.revision);
    // Its claim is beyond the instance's replica count: the honest replicas stay assigned.
    assert.deepEqual(
      after.replicaSet
        .filter((r) => r.assigned)
        .map((r) => r.node)
        .sort(),
      victim.replicaSet
        .filter((r) => r.assigned)
        .map((r) => r.node)
        .sort(),
    );
  });

  test('healthy forever: a heartbeat dated 9e15 is refused and never counts as liveness', async () => {
    for (const [who, key] of [
      ['stranger', stranger],
      ['admitted node', evilNode],
    ] as const) {
      const r = await atk.post(url1, await atk.op(url1, key, 'node.heartbeat', { status: 'healthy' }, [], 9e15));
      atk.record(`${who} heartbeat ts 9e15`, refusedAtApi(r), `${r.status} ${r.body.error?.code}`);
      assert.ok(refusedAtApi(r), JSON.stringify(r.body));
    }
    const nodes = await get<Array<{ id: string; heartbeat: { ts: number } | null }>>(`${url1}/nodes`);
    assert.ok(
      !nodes.some((n) => n.heartbeat && n.heartbeat.ts > Date.now() + 60_000),
      'no future heartbeat in the view',
    );
  });

  test('admission: an unadmitted key is pending, not a node; it places, claims and routes nothing', async () => {
    const net = await get<{ policy: string; pending: string[] }>(`${url1}/network`);
    const nodes = await get<Array<{ id: string }>>(`${url1}/nodes`);
    const ok =
      net.policy === 'admins' &&
      net.pending.includes(stranger.publicKey) &&
      !nodes.some((n) => n.id === stranger.publicKey);
    atk.record('unadmitted node counts as a node', ok, `policy ${net.policy}; pending ${net.pending.length}`);
    assert.ok(ok);
    // A rival genesis naming the stranger as admin is refused, and so is an admit citing it.
    const rival = createOp(
      stranger,
      'network.init',
      { name: 'mine', admission: 'admins', admins: [stranger.publicKey] },
      [],
    );
    const r = await atk.post(url1, rival);
    atk.record('rival network.init', refusedAtApi(r), `${r.status} ${r.body.error?.code}`);
    assert.ok(refusedAtApi(r), JSON.stringify(r.body));
    const selfAdmit = await atk.post(
      url1,
      createOp(stranger, 'node.admit', { node: stranger.publicKey, formnetRange: '10.129.66.0/24' }, [rival.hash]),
    );
    atk.record(
      'self-admission through a rival genesis',
      selfAdmit.status >= 400 || selfAdmit.status === 202,
      `${selfAdmit.status}`,
    );
    const still = await get<{ pending: string[] }>(`${url1}/network`);
    assert.ok(still.pending.includes(stranger.publicKey), 'still pending');
  });

  test("routing hijack: formnetRange 0.0.0.0/0 and a peer claiming 0.0.0.0/0 or another node's slice are refused", async () => {
    const update = await atk.post(url1, await atk.op(url1, evilNode, 'node.update', { formnetRange: '0.0.0.0/0' }));
    atk.record(
      'node.update formnetRange 0.0.0.0/0',
      refusedAtApi(update),
      `${update.status} ${update.body.error?.code}`,
    );
    assert.ok(refusedAtApi(update), JSON.stringify(update.body));
    const wg = generateWireGuardKeyPair().publicKey;
    const everything = await atk.post(
      url1,
      await atk.op(url1, evilNode, 'formnet.peer', {
        wgPublicKey: wg,
        endpoint: '127.0.0.1:9',
        allowedIps: ['0.0.0.0/0'],
      }),
    );
    atk.record(
      'formnet.peer allowedIps 0.0.0.0/0',
      refusedAtApi(everything),
      `${everything.status} ${everything.body.error?.code}`,
    );
    assert.ok(refusedAtApi(everything), JSON.stringify(everything.body));
    // A peer naming the honest node 1's slice (accepted as an op, but a peer routes only what it holds).
    const steal = await atk.post(
      url1,
      await atk.op(url1, evilNode, 'formnet.peer', {
        wgPublicKey: wg,
        endpoint: 'no-such-host.invalid:51820',
        allowedIps: [n1.instanceCidr],
      }),
    );
    const peers = await get<Array<{ publicKey: string; allowedIps: string[] }>>(`${url1}/formnet/peers`);
    const mine = peers.find((p) => p.publicKey === evilNode.publicKey);
    const held = !mine || !mine.allowedIps.includes(n1.instanceCidr);
    atk.record(
      "peer routes another node's slice",
      held,
      `op ${steal.status}; view allowedIps ${JSON.stringify(mine?.allowedIps ?? [])}`,
    );
    assert.ok(held, `the malicious peer does not route ${n1.instanceCidr}`);
  });

  test("name squatting: the victim's name with deps [], the victim's Formpack id and a taken address", async () => {
    const ts = Date.now();
    const body = {
      id: instanceIdOf(stranger.publicKey, victim.name, ts),
      formpackId: victim.formpackId,
      name: victim.name,
      replicas: 1,
      resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
    };
    const squat = await atk.post(url1, createOp(stranger, 'instance.create', body, [], ts));
    atk.record(
      "instance.create with the victim's name, deps []",
      refusedAtApi(squat),
      `${squat.status} ${squat.body.error?.code}`,
    );
    assert.ok(refusedAtApi(squat), JSON.stringify(squat.body));
    const fps = await get<Array<{ id: string; owner: string; sha256s: Record<string, string> }>>(`${url1}/formpacks`);
    const theirs = fps.find((f) => f.id === victim.formpackId && f.owner === victimKey.address);
    assert.ok(theirs, "the victim's Formpack is published");
    const pub = await atk.post(
      url1,
      createOp(
        stranger,
        'formpack.publish',
        {
          id: victim.formpackId,
          name: 'evil',
          owner: stranger.address,
          sha256s: { 'disk.qcow2': 'ff'.repeat(32) },
          size: 1,
        },
        [],
        1,
      ),
    );
    const after = (await get<typeof fps>(`${url1}/formpacks`)).find(
      (f) => f.id === victim.formpackId && f.owner === victimKey.address,
    );
    const fpIntact = JSON.stringify(after?.sha256s) === JSON.stringify(theirs.sha256s);
    atk.record("late formpack.publish of the victim's id", fpIntact, `op ${pub.status}; the victim's entry unchanged`);
    assert.ok(fpIntact);
    const ip = victim.replicaSet.find((r) => r.formnetIp)?.formnetIp as string;
    const alloc = await atk.post(
      url1,
      await atk.op(url1, evilNode, 'formnet.allocate', { address: ip, peer: evilNode.publicKey, kind: 'node' }),
    );
    const allocs = await get<Array<{ address: string; allocatedBy: string }>>(`${url1}/formnet/allocations`);
    const holder = allocs.filter((a) => a.address === ip).map((a) => a.allocatedBy);
    const addrIntact = !holder.includes(evilNode.publicKey);
    atk.record(
      "formnet.allocate of the victim's address",
      refusedAtApi(alloc) || addrIntact,
      `op ${alloc.status}; holders ${holder.length}`,
    );
    assert.ok(addrIntact, JSON.stringify(holder));
    const dns = await get<Array<{ name: string; instanceId: string | null }>>(`${url1}/dns`);
    const rec = dns.find(
      (d) =>
        d.name.startsWith(`${victim.name}.`) &&
        d.name.split('.').length === 1 + s.nodes[0]!.info!.domain.split('.').length,
    );
    assert.equal(rec?.instanceId, victim.id, `${victim.name}.<domain> still names the victim's instance`);
  });

  test('delegations: one without an end, or past the maximum lifetime, is refused', async () => {
    const session = generateKeyPair();
    const forever = createDelegation(stranger, session.publicKey, Date.now() + 10 * 365 * 86_400_000);
    const ts = Date.now();
    const body = {
      id: instanceIdOf(stranger.publicKey, 'stranger-app', ts),
      formpackId: victim.formpackId,
      name: 'stranger-app',
      replicas: 1,
      resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
      onBehalfOf: forever,
    };
    const r = await atk.post(url1, createOp(session, 'instance.create', body, await atk.heads(url1), ts));
    atk.record('10-year delegation', refusedAtApi(r), `${r.status} ${r.body.error?.code}`);
    assert.ok(refusedAtApi(r), JSON.stringify(r.body));
  });

  test('replay: a request signed for node 1 is refused by node 2, and by node 1 the second time', async () => {
    const id1 = (await get<{ identity: string }>(`${serviceBase(n1, 'vmm')}/identity`)).identity;
    const headers = signRequest(victimKey, { method: 'GET', path: '/vms', audience: id1 });
    const at1 = await fetch(`${serviceBase(n1, 'vmm')}/vms`, { headers, signal: AbortSignal.timeout(10_000) });
    await at1.body?.cancel();
    assert.equal(at1.status, 200, 'the genuine request works at node 1');
    const at2 = await fetch(`${serviceBase(n2, 'vmm')}/vms`, { headers, signal: AbortSignal.timeout(10_000) });
    const body2 = (await at2.json()) as { error?: { code: string } };
    atk.record(
      'request replayed to another node',
      at2.status >= 400 && !!body2.error,
      `${at2.status} ${body2.error?.code}`,
    );
    assert.ok(at2.status >= 400, `node 2 answered ${at2.status}`);
    const again = await fetch(`${serviceBase(n1, 'vmm')}/vms`, { headers, signal: AbortSignal.timeout(10_000) });
    const bodyAgain = (await again.json()) as { error?: { code: string } };
    atk.record('request replayed to the same node', again.status >= 400, `${again.status} ${bodyAgain.error?.code}`);
    assert.ok(again.status >= 400);
  });

  test('forged, oversized and flooding ops are refused before they cost anything', async () => {
    const good = await atk.op(url1, stranger, 'account.update', { name: 'mallory' });
    const forged = { ...good, body: { name: 'someone-else' } };
    const f = await atk.post(url1, forged);
    atk.record('body changed after signing', refusedAtApi(f), `${f.status} ${f.body.error?.code}`);
    assert.ok(refusedAtApi(f));
    const otherSig = await atk.op(url1, stranger, 'account.update', { name: 'x' });
    const swapped = { ...good, sig: otherSig.sig };
    const sw = await atk.post(url1, swapped);
    atk.record('signature of another op', refusedAtApi(sw), `${sw.status} ${sw.body.error?.code}`);
    assert.ok(refusedAtApi(sw));
    const big = await atk.post(url1, await atk.op(url1, stranger, 'account.update', { name: 'x'.repeat(20_000) }));
    atk.record('oversized op', big.status >= 400, `${big.status}`);
    assert.ok(big.status >= 400);
    const flood = Array.from({ length: 10_001 }, (_, i) => ({ ...good, ts: good.ts + i }));
    const fl = await atk.post(url1, { ops: flood }, '/ops/batch');
    atk.record('unsigned batch of 10,001 ops', fl.status >= 400, `${fl.status} ${fl.body.error?.code}`);
    assert.ok(fl.status >= 400, `batch answered ${fl.status}`);
  });

  test('equivocation: two conflicting ops at two nodes converge to one state', async () => {
    const heads = await atk.heads(url1);
    const a = createOp(stranger, 'account.update', { name: 'alice-' + Date.now() }, heads);
    const b = createOp(stranger, 'account.update', { name: 'bob-' + Date.now() }, heads);
    await atk.post(url1, a);
    await atk.post(url2, b);
    const same = await until(
      'equal digests',
      async () => {
        const [d1, d2] = await Promise.all([
          get<{ digest: string }>(`${url1}/digest`),
          get<{ digest: string }>(`${url2}/digest`),
        ]);
        return d1.digest === d2.digest;
      },
      60_000,
    ).catch(() => false);
    atk.record('equivocation splits replicas', same === true, same ? 'same digest on both nodes' : 'digests differ');
    assert.equal(same, true);
  });

  test('afterwards the honest instance is intact: revision, placement, addresses, and it answers HTTP over formnet', async () => {
    const [a1, a2] = await Promise.all([instance(url1), instance(url2)]);
    for (const a of [a1, a2]) {
      assert.equal(a.revision, victim.revision);
      assert.equal(a.revisionHash, victim.revisionHash);
      assert.equal(a.owner, victim.owner);
      assert.deepEqual(
        a.replicaSet
          .filter((r) => r.assigned)
          .map((r) => [r.node, r.formnetIp, r.state])
          .sort(),
        victim.replicaSet
          .filter((r) => r.assigned)
          .map((r) => [r.node, r.formnetIp, 'running'])
          .sort(),
      );
    }
    for (const r of victim.replicaSet.filter((x) => x.formnetIp)) {
      for (const from of s.nodes) {
        const body = await inNs(from.netns, ['curl', '-sf', '-m', '10', `http://${r.formnetIp}:8080/`]);
        assert.match(body, /Hello from hello-server/);
      }
    }
    const refused = atk.records.filter((r) => r.refused).length;
    assert.equal(refused, atk.records.length, atk.summary());
  });
});
