import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateWireGuardKeyPair } from '@formation/identity';
import { filterPeers, parseEndpoint, peerProblem, type WgPeer } from '../src/wireguard.ts';

const key = (): string => generateWireGuardKeyPair().publicKey;
const peer = (over: Partial<WgPeer> = {}): WgPeer => ({
  publicKey: key(),
  endpoint: '192.0.2.10:51820',
  allowedIps: ['10.128.0.7/32'],
  ...over,
});

test('parseEndpoint: ip:port, [v6]:port, hostname:port; nothing else', () => {
  assert.deepEqual(parseEndpoint('192.0.2.1:51820'), { host: '192.0.2.1', port: 51820 });
  assert.deepEqual(parseEndpoint('[2001:db8::1]:51820'), { host: '2001:db8::1', port: 51820 });
  assert.deepEqual(parseEndpoint('node-1.example.org:1'), { host: 'node-1.example.org', port: 1 });
  for (const bad of ['192.0.2.1', '192.0.2.1:0', '192.0.2.1:65536', 'a b:1', '[zz]:1', 'x:1:2', ':51820', '-x:1', '']) {
    assert.equal(parseEndpoint(bad), undefined, bad);
  }
});

test('peerProblem: key, endpoint, allowed IPs inside formnet, protected addresses, keepalive', () => {
  assert.equal(peerProblem(peer()), undefined);
  assert.equal(peerProblem(peer({ endpoint: undefined })), undefined, 'a peer that dials in has no endpoint');
  assert.equal(peerProblem(peer({ allowedIps: ['10.129.7.0/24', '10.128.0.8'] })), undefined);
  const cases: Array<[Partial<WgPeer>, RegExp]> = [
    [{ publicKey: 'not-a-key' }, /public key/],
    [{ endpoint: 'host' }, /endpoint/],
    [{ endpoint: '10.0.0.1:51820 persistent-keepalive 1' }, /endpoint/],
    [{ allowedIps: ['0.0.0.0/0'] }, /outside 10\.128\.0\.0\/9/],
    [{ allowedIps: ['10.0.0.0/8'] }, /outside/],
    [{ allowedIps: ['192.168.1.0/24'] }, /outside/],
    [{ allowedIps: ['10.128.0.0/33'] }, /not an IPv4 CIDR/],
    [{ allowedIps: ['10.128.0.1/32,0.0.0.0/0'] }, /not an IPv4 CIDR/],
    [{ allowedIps: 'x' as unknown as string[] }, /not a list/],
    [{ persistentKeepalive: -1 }, /keepalive/],
  ];
  for (const [over, re] of cases) assert.match(peerProblem(peer(over)) ?? 'accepted', re, JSON.stringify(over));
  // The host's default gateway is never routed into formnet, even when it lies in the range.
  assert.match(
    peerProblem(peer({ allowedIps: ['10.128.5.0/24'] }), { protectedIps: ['10.128.5.1'] }) ?? '',
    /protected address 10\.128\.5\.1/,
  );
});

test('filterPeers: bad peers are refused with a reason, the rest kept in order', () => {
  const a = peer();
  const b = peer({ allowedIps: ['10.129.1.0/24'] });
  const stolen = peer({ publicKey: a.publicKey, allowedIps: ['10.128.0.9/32'] });
  const overlap = peer({ allowedIps: ['10.129.1.5/32'] });
  const wide = peer({ allowedIps: ['0.0.0.0/0'] });
  const { accepted, rejected } = filterPeers([a, wide, b, stolen, overlap]);
  assert.deepEqual(accepted, [a, b]);
  assert.deepEqual(
    rejected.map((r) => [r.publicKey, r.reason]),
    [
      [wide.publicKey, 'allowed IP 0.0.0.0/0 is outside 10.128.0.0/9'],
      [a.publicKey, 'its public key is already another peer’s'],
      [overlap.publicKey, 'allowed IP 10.129.1.5/32 is already routed to another peer'],
    ],
  );
  assert.deepEqual(filterPeers([]), { accepted: [], rejected: [] });
});
