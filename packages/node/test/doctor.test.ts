import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluateHost, type HostProbe } from '../src/index.ts';

const healthy: HostProbe = {
  isRoot: true,
  nodeVersion: 'v24.21.0',
  programs: { 'qemu-system-x86_64': true, 'wireguard-go': true, mmdebstrap: true },
  kvm: 'usable',
  kvmDetail: 'ok',
  tun: true,
  kernelWireGuard: false,
  guestKernel: '/boot/vmlinuz-6.1.0-56-cloud-amd64',
  ports: { '3001': true, '51820/udp': true },
  diskFreeGiB: 50,
  dataDir: '/root/.formation',
  memFreeGiB: 10,
  memTotalGiB: 24,
};

const byId = (p: HostProbe) => new Map(evaluateHost(p).map((f) => [f.id, f]));

test('a healthy host has no failures', () => {
  assert.ok(evaluateHost(healthy).every((f) => f.status === 'ok'));
});

test('broken KVM is a warning that names the cost of emulation', () => {
  const f = byId({ ...healthy, kvm: 'unusable', kvmDetail: 'probe failed' }).get('kvm')!;
  assert.equal(f.status, 'warn');
  assert.match(f.summary, /software emulation/);
  assert.ok(f.fix);
});

test('missing programs fail with the apt packages to install', () => {
  const f = byId({ ...healthy, programs: { ...healthy.programs, 'qemu-system-x86_64': false, 'qemu-img': false } }).get(
    'programs',
  )!;
  assert.equal(f.status, 'fail');
  assert.match(f.fix ?? '', /apt-get install -y qemu-system-x86 qemu-utils/);
});

test('no WireGuard at all fails; wireguard-go alone is fine', () => {
  assert.equal(byId(healthy).get('wireguard')!.status, 'ok');
  const f = byId({ ...healthy, programs: { ...healthy.programs, 'wireguard-go': false } }).get('wireguard')!;
  assert.equal(f.status, 'fail');
});

test('busy ports, low disk, old node and no root are reported with fixes', () => {
  const m = byId({
    ...healthy,
    ports: { '3002': false },
    diskFreeGiB: 1,
    nodeVersion: 'v20.1.0',
    isRoot: false,
    tun: false,
  });
  assert.equal(m.get('ports')!.status, 'warn');
  assert.match(m.get('ports')!.summary, /3002/);
  assert.equal(m.get('disk')!.status, 'fail');
  assert.equal(m.get('node')!.status, 'fail');
  assert.equal(m.get('root')!.status, 'warn');
  assert.equal(m.get('tun')!.status, 'fail');
});
