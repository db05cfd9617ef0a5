import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fingerprintGpus } from '@formation/vmm';
import { evaluateHost, gpuFinding, type HostProbe } from '../src/doctor.ts';

const gpu = {
  address: '0000:01:00.0',
  vendor: '10de',
  device: '2204',
  iommuGroup: 12,
  driver: 'vfio-pci',
  passthrough: true,
};

test('doctor: no GPU, GPUs ready for passthrough, and GPUs that cannot be passed (with the fix)', () => {
  assert.deepEqual(gpuFinding([]), {
    id: 'gpu',
    status: 'ok',
    summary: 'no GPU found (no PCI display controller): GPU instances are placed on other nodes',
  });
  const ready = gpuFinding([gpu]);
  assert.equal(ready.status, 'ok');
  assert.match(
    ready.summary,
    /ready for VFIO passthrough: 0000:01:00.0 \(nvidia 10de:2204, IOMMU group 12, driver vfio-pci\)/,
  );
  const stuck = gpuFinding([
    gpu,
    {
      ...gpu,
      address: '0000:02:00.0',
      driver: 'nvidia',
      passthrough: false,
      reason: 'it is bound to nvidia, not vfio-pci: …',
    },
  ]);
  assert.equal(stuck.status, 'warn');
  assert.match(stuck.summary, /^1 of 2 GPU\(s\) cannot be passed to a VM: 0000:02:00.0/);
  assert.match(stuck.fix ?? '', /^0000:02:00.0: it is bound to nvidia, not vfio-pci/);
});

test('doctor on this host says what the real sysfs probe found (no GPU on these test machines)', () => {
  const found = fingerprintGpus();
  const probe = { gpus: found } as unknown as HostProbe;
  const f = gpuFinding(found);
  if (found.length === 0) assert.match(f.summary, /^no GPU found/);
  else assert.match(f.summary, /GPU/);
  // evaluateHost includes it only when probed (older probes have no gpus).
  assert.equal(typeof probe.gpus, 'object');
  const base: HostProbe = {
    isRoot: true,
    nodeVersion: 'v24.0.0',
    programs: {},
    kvm: 'usable',
    kvmDetail: 'ok',
    tun: true,
    kernelWireGuard: true,
    guestKernel: '/boot/vmlinuz',
    ports: {},
    diskFreeGiB: 50,
    dataDir: '/x',
    memFreeGiB: 8,
    memTotalGiB: 16,
  };
  assert.equal(
    evaluateHost(base).find((x) => x.id === 'gpu'),
    undefined,
  );
  assert.deepEqual(
    evaluateHost({ ...base, gpus: found }).find((x) => x.id === 'gpu'),
    f,
  );
});
