import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import type { FormError, FormpackManifest } from '@formation/interface';
import type { FormpackView, InstanceView, NodeView, ReplicaView } from '@formation/state';
import {
  diskInfo,
  formpackDetail,
  formpackList,
  health,
  instanceContextFrom,
  instanceInfo,
  nodeSummary,
  peerSummaries,
  usedByNode,
} from '../src/server/views.ts';

// The pure view mappers of the BFF: node API data in, dashboard views out (no Fastify, no node APIs).

const res = { vcpu: 1, memMiB: 512, diskGiB: 2 };
const T = 1_700_000_000_000;

function node(id: string, over: Partial<NodeView> = {}): NodeView {
  return {
    id,
    admitted: true,
    address: `0x${id.padEnd(40, '0')}`,
    name: `node-${id}`,
    capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
    endpoint: '127.0.0.1:3005',
    p2pPeerId: 'x',
    wgPublicKey: 'k',
    formnetRange: '10.129.0.0/24',
    registeredBy: id,
    heartbeat: { ts: T, status: 'ok', used: null },
    ...over,
  };
}

function replica(n: string, state: string | null, over: Partial<ReplicaView> = {}): ReplicaView {
  return {
    node: n,
    claimedBy: n,
    assigned: true,
    state,
    formnetIp: null,
    revision: null,
    reason: null,
    ts: T,
    ...over,
  };
}

function instance(id: string, name: string, owner: string, replicaSet: ReplicaView[] = []): InstanceView {
  return {
    id,
    owner: 'pk',
    ownerAddress: owner,
    name,
    formpackId: 'f'.repeat(64),
    replicas: 1,
    resources: res,
    desired: 'running',
    createdBy: 'pk',
    deleted: false,
    revision: 0,
    revisionHash: null,
    formpack: null,
    overQuota: false,
    replicaSet,
  };
}

test('instanceContextFrom prefers the short DNS name and finds this node by its formnet address', () => {
  const nodes = [node('a'), node('b')];
  const i = instance('i1', 'web', '0xalice');
  const ctx = instanceContextFrom(
    [i],
    nodes,
    [
      { name: 'web.0xalice.form', source: 'instance', instanceId: 'i1', addresses: [], owner: '0xalice' },
      { name: 'web.form', source: 'instance', instanceId: 'i1', addresses: [], owner: '0xalice' },
      { name: 'other.form', source: 'explicit', instanceId: null, addresses: [], owner: '0xalice' },
    ],
    { node: nodes[1]!.address },
  );
  assert.equal(ctx.dnsOf.get('i1'), 'web.form');
  assert.equal(ctx.selfNode, 'b');
  assert.equal(instanceContextFrom([i], nodes, [], null).selfNode, null);
});

test('instanceInfo maps replicas (health, node name, local) and counts only replicas on healthy nodes', () => {
  const nodes = [node('a'), node('b')];
  const i = instance('i1', 'web', '0xalice', [replica('a', 'running'), replica('zz', null)]);
  const ctx = instanceContextFrom([i], nodes, [], { node: nodes[0]!.address });
  const v = instanceInfo(i, ctx, T + 1000, 30_000);
  assert.equal(v.status, 'SUCCESS');
  assert.equal(v.running, 1);
  assert.deepEqual(
    v.replicaSet.map((r) => [r.node, r.nodeName, r.nodeAddress, r.state, r.health, r.local]),
    [
      ['a', 'node-a', nodes[0]!.address, 'running', 'healthy', true],
      ['zz', null, 'zz', 'claimed', 'starting', false],
    ],
  );
  // The same data an hour later: node b's heartbeat is stale, so its running replica no longer counts.
  const j = instance('i1', 'web', '0xalice', [replica('b', 'running')]);
  assert.equal(instanceInfo(j, ctx, T + 3_600_000, 30_000).running, 0);
  assert.deepEqual(
    ['running', 'suspended', 'failed', 'stopped', 'deleted', 'pending', 'weird'].map((s) => health(s)),
    ['healthy', 'suspended', 'failed', 'stopped', 'stopped', 'starting', 'unknown'],
  );
});

test('health: a running replica shows its HEALTHCHECK verdict for the release it runs, not an older one', () => {
  const v = (status: 'starting' | 'healthy' | 'unhealthy', release: number) => ({ status, release });
  for (const [name, state, verdict, release, want] of [
    ['no HEALTHCHECK', 'running', null, 2, 'healthy'],
    ['check passing', 'running', v('healthy', 2), 2, 'healthy'],
    ['check failing', 'running', v('unhealthy', 2), 2, 'unhealthy'],
    ['inside its start period', 'running', v('starting', 2), 2, 'starting'],
    ['a failing verdict about the previous release', 'running', v('unhealthy', 1), 2, 'healthy'],
    ['release not reported', 'running', v('unhealthy', 1), null, 'unhealthy'],
    ['a verdict does not wake a suspended replica', 'suspended', v('healthy', 2), 2, 'suspended'],
    ['a verdict does not revive a failed one', 'failed', v('healthy', 2), 2, 'failed'],
  ] as const) {
    assert.equal(health(state, verdict, release), want, name);
  }
});

test('usedByNode sums running and starting replicas of live instances; nodeSummary prefers the heartbeat', () => {
  const a = instance('i1', 'a', '0x1', [replica('n1', 'running'), replica('n2', 'stopped')]);
  const b = instance('i2', 'b', '0x1', [replica('n1', 'starting')]);
  const gone = { ...instance('i3', 'c', '0x1', [replica('n1', 'running')]), deleted: true };
  const used = usedByNode([a, b, gone]);
  assert.deepEqual(used.get('n1'), { vcpu: 2, memMiB: 1024, diskGiB: 4 });
  assert.equal(used.has('n2'), false);

  const n1 = node('n1', { heartbeat: null });
  const s = nodeSummary(n1, n1.address, used.get('n1'));
  assert.deepEqual(
    [s.used, s.self, s.status, s.lastHeartbeat],
    [{ vcpu: 2, memMiB: 1024, diskGiB: 4 }, true, null, null],
  );
  const hb = { vcpu: 3, memMiB: 100, diskGiB: 1 };
  const n2 = node('n2', { heartbeat: { ts: T, status: 'ok', used: hb } });
  assert.deepEqual(nodeSummary(n2, undefined, undefined).used, hb);
  assert.equal(nodeSummary(n2, undefined, undefined).self, false);
});

test('peerSummaries labels nodes by name and other peers by allocation kind and address', () => {
  const dev = generateKeyPair();
  const nodes = [node('n1')];
  const peers = [
    { publicKey: 'n1', wgPublicKey: 'w', endpoint: '1.2.3.4:51820', allowedIps: ['10.129.0.1/32'] },
    { publicKey: dev.publicKey, wgPublicKey: 'w2', endpoint: null, allowedIps: ['10.130.0.2/32'] },
    { publicKey: 'bogus', wgPublicKey: 'w3', endpoint: null, allowedIps: [] },
  ];
  const out = peerSummaries(peers, nodes, [
    { address: '10.130.0.2', peer: dev.publicKey, kind: 'developer', allocatedBy: 'x', op: 'y' },
    { address: '10.130.0.3', peer: 'bogus', kind: 'strange', allocatedBy: 'x', op: 'y' },
  ]);
  assert.deepEqual(
    out.map((p) => [p.kind, p.label]),
    [
      ['node', 'node-n1'],
      ['developer', `developer ${out[1]!.address.slice(0, 10)}`],
      ['other', 'other bogus'],
    ],
  );
  assert.equal(out[0]!.address, nodes[0]!.address);
  assert.match(out[1]!.address, /^0x[0-9a-f]{40}$/i);
});

const manifest = (id: string, owner: string) =>
  ({
    id,
    name: `pack-${id.slice(0, 4)}`,
    owner,
    createdAt: '2026-01-01T00:00:00.000Z',
    artifacts: { kernel: { file: 'vmlinuz', sha256: 'aa', bytes: 10 }, disk: { file: 'disk', sha256: 'bb', bytes: 5 } },
    resources: res,
    cmdline: 'console=ttyS0',
    init: {},
    formfile: {},
  }) as unknown as FormpackManifest;

const published = (id: string, owner: string): FormpackView => ({
  id,
  name: `pub-${id.slice(0, 4)}`,
  owner,
  sha256s: { kernel: 'aa' },
  service: null,
  size: 99,
  publishedBy: 'x',
});

test("formpackList merges the node's builds with published Formpacks, only the owner's", () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const c = 'c'.repeat(64);
  const list = formpackList(
    [manifest(a, '0xme'), manifest(c, '0xother')],
    [published(a, '0xme'), published(b, '0xme'), published(c, '0xother')],
    '0xme',
  );
  assert.deepEqual(list, [
    { id: a, name: 'pack-aaaa', size: 15, published: true, local: true, createdAt: '2026-01-01T00:00:00.000Z' },
    { id: b, name: 'pub-bbbb', size: 99, published: true, local: false, createdAt: null },
  ]);
});

test('formpackDetail reads the manifest or the published record, and hides what is not yours', () => {
  const a = 'a'.repeat(64);
  const inst = { ...instance('i1', 'web', '0xme'), formpackId: a };
  const d = formpackDetail(a.slice(0, 8), manifest(a, '0xme'), [], [inst], '0xme');
  assert.deepEqual([d.id, d.size, d.local, d.published, d.sha256s], [a, 15, true, false, { kernel: 'aa', disk: 'bb' }]);
  assert.deepEqual(d.instances, [{ id: 'i1', name: 'web' }]);
  assert.equal(d.manifest?.cmdline, 'console=ttyS0');

  const p = formpackDetail(a, undefined, [published(a, '0xme')], [], '0xme');
  assert.deepEqual([p.name, p.size, p.local, p.published, p.manifest], ['pub-aaaa', 99, false, true, null]);

  for (const [m, pub] of [
    [manifest(a, '0xother'), []],
    [undefined, [published(a, '0xother')]],
    [undefined, []],
  ] as const) {
    assert.throws(
      () => formpackDetail(a, m, [...pub], [], '0xme'),
      (e: FormError) => e.code === 'PACK_NOT_FOUND',
    );
  }
});

test('diskInfo says what each lock state means', () => {
  assert.deepEqual(diskInfo({ state: 'unlocked' }), { state: 'unlocked', detail: 'mounted at /data' });
  assert.equal(diskInfo({ state: 'locked', luks: 'no' }).detail, 'blank: formatted at the first unlock');
  assert.equal(diskInfo({ state: 'locked', luks: 'yes' }).detail, 'encrypted, not opened since the replica booted');
  assert.equal(diskInfo({ state: 'absent' }).detail, 'this replica has no data disk');
  assert.equal(diskInfo({ state: 'unknown', error: 'boom' }).detail, 'boom');
});
