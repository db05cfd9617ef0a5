import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  desiredPeers,
  diffPeers,
  diffRoutes,
  type FormnetMember,
  isWgKey,
  parseWgDump,
  peerSetArgs,
  type WgPeer,
} from '../src/index.ts';

const K = (c: string) => `${c.repeat(42)}A=`;

test('parseWgDump reads the interface and peers', () => {
  const dump = [
    `${K('p')}\t${K('P')}\t51820\toff`,
    `${K('a')}\t(none)\t192.168.77.2:51820\t10.128.0.2/32,10.129.0.0/24\t1732000000\t1240\t980\t25`,
    `${K('b')}\t(none)\t(none)\t(none)\t0\t0\t0\toff`,
  ].join('\n');
  const s = parseWgDump(dump);
  assert.equal(s.publicKey, K('P'));
  assert.equal(s.listenPort, 51820);
  assert.deepEqual(s.peers[0], {
    publicKey: K('a'),
    endpoint: '192.168.77.2:51820',
    allowedIps: ['10.128.0.2/32', '10.129.0.0/24'],
    latestHandshake: 1732000000,
    rxBytes: 1240,
    txBytes: 980,
    persistentKeepalive: 25,
  });
  assert.deepEqual(s.peers[1]?.allowedIps, []);
  assert.equal(s.peers[1]?.endpoint, undefined);
  assert.equal(s.peers[1]?.persistentKeepalive, undefined);
  assert.throws(() => parseWgDump(''), { code: 'NET_ERROR' });
});

test('diffPeers adds, updates, removes, and leaves equal peers alone', () => {
  const actual: WgPeer[] = [
    { publicKey: K('a'), endpoint: '1.1.1.1:1', allowedIps: ['10.128.0.2/32'], persistentKeepalive: 25 },
    { publicKey: K('b'), endpoint: '1.1.1.2:1', allowedIps: ['10.128.0.3/32'], persistentKeepalive: 25 },
    { publicKey: K('c'), endpoint: '1.1.1.3:1', allowedIps: ['10.128.0.4/32'], persistentKeepalive: 25 },
    { publicKey: K('d'), endpoint: '9.9.9.9:5', allowedIps: ['10.128.0.5/32'], persistentKeepalive: 25 },
  ];
  const desired: WgPeer[] = [
    { publicKey: K('a'), endpoint: '1.1.1.1:1', allowedIps: ['10.128.0.2'], persistentKeepalive: 25 }, // same (normalised)
    { publicKey: K('b'), endpoint: '1.1.1.9:1', allowedIps: ['10.128.0.3/32'], persistentKeepalive: 25 }, // moved
    { publicKey: K('d'), allowedIps: ['10.128.0.5/32'], persistentKeepalive: 25 }, // no endpoint: keep learned one
    { publicKey: K('e'), allowedIps: ['10.128.0.6/32', '10.129.1.0/24'] },
  ];
  const d = diffPeers(desired, actual);
  assert.deepEqual(
    d.add.map((p) => p.publicKey),
    [K('e')],
  );
  assert.deepEqual(
    d.update.map((p) => p.publicKey),
    [K('b')],
  );
  assert.deepEqual(d.remove, [K('c')]);
  assert.deepEqual(diffPeers(desired, desired), { add: [], update: [], remove: [] });
});

test('diffRoutes follows the union of allowed IPs', () => {
  const r = diffRoutes(
    [
      { publicKey: K('a'), allowedIps: ['10.128.0.2/32', '10.129.0.0/24'] },
      { publicKey: K('b'), allowedIps: ['10.128.0.3/32'] },
    ],
    ['10.128.0.2/32', '10.128.0.9/32'],
  );
  assert.deepEqual(r, { add: ['10.128.0.3/32', '10.129.0.0/24'], remove: ['10.128.0.9/32'] });
});

test('peerSetArgs replaces allowed IPs and turns keepalive off explicitly', () => {
  assert.deepEqual(peerSetArgs({ publicKey: K('a'), allowedIps: ['10.128.0.2/32', '10.129.0.0/24'] }), [
    'peer',
    K('a'),
    'allowed-ips',
    '10.128.0.2/32,10.129.0.0/24',
    'persistent-keepalive',
    'off',
  ]);
});

test('desiredPeers: every other member, nodes with their slice', () => {
  const members: FormnetMember[] = [
    {
      id: '0x1',
      kind: 'node',
      wgPublicKey: K('a'),
      address: '10.128.0.1',
      endpoint: '192.168.0.1:51820',
      slice: '10.129.0.0/24',
    },
    { id: '0x2', kind: 'developer', wgPublicKey: K('b'), address: '10.128.0.2' },
  ];
  assert.deepEqual(desiredPeers('0x2', members), [
    {
      publicKey: K('a'),
      endpoint: '192.168.0.1:51820',
      allowedIps: ['10.128.0.1/32', '10.129.0.0/24'],
      persistentKeepalive: 25,
    },
  ]);
  assert.equal(desiredPeers('0x1', members)[0]?.endpoint, undefined);
  assert.equal(isWgKey(K('a')), true);
  assert.equal(isWgKey('abc'), false);
});
