import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  allocateInstanceAddress,
  allocateMemberAddress,
  allocateNodeSlice,
  cidrContains,
  FORMNET_CIDR,
  intToIp,
  ipToInt,
  isFormnetAddress,
  MEMBER_POOL,
  parseCidr,
  resolveClaims,
  sliceAt,
  sliceGateway,
} from '../src/index.ts';

test('address arithmetic and containment', () => {
  assert.equal(intToIp(ipToInt('10.128.3.4')), '10.128.3.4');
  assert.deepEqual(parseCidr('10.200.1.7/9'), { base: ipToInt('10.128.0.0'), prefix: 9 });
  assert.equal(cidrContains(FORMNET_CIDR, '10.255.255.255'), true);
  assert.equal(cidrContains(FORMNET_CIDR, '10.127.255.255'), false);
  assert.equal(cidrContains(FORMNET_CIDR, '10.129.0.0/24'), true);
  assert.equal(cidrContains('10.129.0.0/24', FORMNET_CIDR), false);
  assert.equal(isFormnetAddress('192.168.1.1'), false);
  for (const bad of ['10.0.0', '10.0.0.256', '10.0.0.1/33', 'x.y.z.w', '10.0.0.1/-1']) {
    assert.throws(() => parseCidr(bad), { code: 'BAD_REQUEST' }, bad);
  }
});

test('member addresses: deterministic, in the member pool, never twice', () => {
  const a = allocateMemberAddress('0xaaa', []);
  assert.equal(allocateMemberAddress('0xaaa', []), a, 'same input, same answer');
  assert.equal(cidrContains(MEMBER_POOL, a), true);
  const taken = new Set<string>();
  for (let i = 0; i < 500; i++) {
    const ip = allocateMemberAddress(`0x${i}`, taken);
    assert.equal(taken.has(ip), false);
    assert.notEqual(ip.split('.')[3], '0');
    assert.notEqual(ip.split('.')[3], '255');
    taken.add(ip);
  }
  // Exhaustion is an error, not a duplicate.
  const tiny = '10.128.0.0/30';
  const t2 = [allocateMemberAddress('x', [], tiny)];
  t2.push(allocateMemberAddress('y', t2, tiny));
  t2.push(allocateMemberAddress('z', t2, tiny));
  assert.equal(new Set(t2).size, 3);
  assert.throws(() => allocateMemberAddress('w', t2, tiny), { code: 'CONFLICT' });
});

test('node slices and instance addresses', () => {
  assert.equal(sliceAt(0), '10.129.0.0/24');
  assert.equal(sliceAt(256), '10.130.0.0/24');
  assert.equal(allocateNodeSlice([]), '10.129.0.0/24');
  assert.equal(allocateNodeSlice(['10.129.0.0/24', '10.129.2.0/24']), '10.129.1.0/24');
  assert.equal(sliceGateway('10.129.1.0/24'), '10.129.1.1');
  assert.equal(allocateInstanceAddress('10.129.1.0/24', []), '10.129.1.2');
  assert.equal(allocateInstanceAddress('10.129.1.0/24', ['10.129.1.2', '10.129.1.3']), '10.129.1.4');
  const full = Array.from({ length: 253 }, (_, i) => `10.129.1.${i + 2}`);
  assert.throws(() => allocateInstanceAddress('10.129.1.0/24', full), { code: 'CONFLICT' });
  assert.throws(() => sliceAt(127 * 256), { code: 'CONFLICT' }, 'past 10.255.255.0/24');
  assert.equal(sliceAt(127 * 256 - 1), '10.255.255.0/24');
});

test('concurrent claims resolve identically in any order', () => {
  const claims = [
    { id: 'n2', address: '10.128.0.7', seq: 5, tiebreak: 'b' },
    { id: 'n1', address: '10.128.0.7', seq: 5, tiebreak: 'a' },
    { id: 'n3', address: '10.129.0.0/24', seq: 1 },
    { id: 'n4', address: '10.129.0.128/25', seq: 2 }, // overlaps n3's slice
    { id: 'n1', address: '10.128.0.9', seq: 9 }, // n1 already holds one
  ];
  const r1 = resolveClaims(claims);
  const r2 = resolveClaims([...claims].reverse());
  assert.deepEqual(r1, r2);
  assert.deepEqual(
    r1.winners.map((w) => w.id),
    ['n3', 'n1'],
  );
  assert.deepEqual(r1.losers.map((w) => w.id).sort(), ['n1', 'n2', 'n4']);
});
