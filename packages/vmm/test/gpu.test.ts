import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import type { DriverVmSpec } from '../src/driver.ts';
import { assertGpusPassable, describeGpus, fingerprintGpus, pickGpus, vfioArgs } from '../src/gpu.ts';
import { macFor } from '../src/network.ts';
import { QemuDriver, qemuArgv } from '../src/qemu-driver.ts';

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

interface FakeDevice {
  address: string;
  class: string;
  vendor?: string;
  device?: string;
  driver?: string;
  group?: number;
}

/** A sysfs (and /dev/vfio) tree as Linux lays it out: devices, their driver and iommu_group links, groups. */
function fixture(o: { devices: FakeDevice[]; iommu?: boolean; vfio?: boolean; devVfio?: number[] }): string {
  const root = mkdtempSync(join(tmpdir(), 'fdg-gpu-'));
  roots.push(root);
  const sys = join(root, 'sys');
  mkdirSync(join(sys, 'bus/pci/devices'), { recursive: true });
  mkdirSync(join(sys, 'bus/pci/drivers'), { recursive: true });
  mkdirSync(join(sys, 'kernel/iommu_groups'), { recursive: true });
  if (o.vfio) mkdirSync(join(sys, 'bus/pci/drivers/vfio-pci'));
  for (const d of o.devices) {
    // Real sysfs: /sys/bus/pci/devices/<addr> is a link into /sys/devices/pci0000:00/<addr>.
    const real = join(sys, 'devices/pci0000:00', d.address);
    mkdirSync(real, { recursive: true });
    symlinkSync(`../../../devices/pci0000:00/${d.address}`, join(sys, 'bus/pci/devices', d.address));
    writeFileSync(join(real, 'class'), `${d.class}\n`);
    writeFileSync(join(real, 'vendor'), `${d.vendor ?? '0x8086'}\n`);
    writeFileSync(join(real, 'device'), `${d.device ?? '0x1234'}\n`);
    if (d.driver) {
      mkdirSync(join(sys, 'bus/pci/drivers', d.driver), { recursive: true });
      symlinkSync(`../../../bus/pci/drivers/${d.driver}`, join(real, 'driver'));
    }
    if (d.group !== undefined && o.iommu !== false) {
      const g = join(sys, 'kernel/iommu_groups', String(d.group));
      mkdirSync(join(g, 'devices'), { recursive: true });
      symlinkSync(`../../../kernel/iommu_groups/${d.group}`, join(real, 'iommu_group'));
      symlinkSync(`../../../../devices/pci0000:00/${d.address}`, join(g, 'devices', d.address));
    }
  }
  mkdirSync(join(root, 'dev/vfio'), { recursive: true });
  for (const g of o.devVfio ?? []) writeFileSync(join(root, 'dev/vfio', String(g)), '');
  return root;
}

const nvidia = { address: '0000:01:00.0', class: '0x030000', vendor: '0x10de', device: '0x2204' };
const nvAudio = { address: '0000:01:00.1', class: '0x040300', vendor: '0x10de', device: '0x1aef' };
const bridge = { address: '0000:00:01.0', class: '0x060400', driver: 'pcieport', group: 1 };

test('a GPU bound to vfio-pci in a viable group with /dev/vfio is ready for passthrough', () => {
  const root = fixture({
    vfio: true,
    devices: [
      { ...bridge },
      { ...nvidia, driver: 'vfio-pci', group: 1 },
      { ...nvAudio, driver: 'vfio-pci', group: 1 },
      { address: '0000:00:02.0', class: '0x020000', driver: 'e1000', group: 2 },
    ],
    devVfio: [1],
  });
  assert.deepEqual(fingerprintGpus(root), [
    { address: '0000:01:00.0', vendor: '10de', device: '2204', iommuGroup: 1, driver: 'vfio-pci', passthrough: true },
  ]);
  assert.match(
    describeGpus(fingerprintGpus(root)),
    /0000:01:00.0 10de:2204 group 1 driver vfio-pci: VFIO passthrough ready/,
  );
  assert.doesNotThrow(() => assertGpusPassable(['0000:01:00.0'], 'vm-1', root));
});

test('each missing condition says why and what to do', () => {
  const cases: Array<[string, Parameters<typeof fixture>[0], RegExp]> = [
    [
      'IOMMU off',
      { iommu: false, vfio: true, devices: [{ ...nvidia, driver: 'vfio-pci', group: 1 }] },
      /IOMMU is off.*intel_iommu=on/,
    ],
    [
      'no vfio-pci module',
      { devices: [{ ...nvidia, driver: 'nvidia', group: 1 }] },
      /vfio-pci driver is not loaded: modprobe vfio-pci/,
    ],
    [
      'bound to the host driver',
      { vfio: true, devices: [{ ...nvidia, driver: 'nvidia', group: 1 }], devVfio: [1] },
      /bound to nvidia, not vfio-pci: .*driver_override/,
    ],
    ['no driver at all', { vfio: true, devices: [{ ...nvidia, group: 1 }] }, /bound to no driver, not vfio-pci/],
    [
      'group shared with a device the host uses',
      {
        vfio: true,
        devices: [
          { ...nvidia, driver: 'vfio-pci', group: 1 },
          { ...nvAudio, driver: 'snd_hda_intel', group: 1 },
        ],
        devVfio: [1],
      },
      /IOMMU group 1 is not viable: 0000:01:00.1 in it is bound to snd_hda_intel/,
    ],
    [
      'no /dev/vfio node',
      { vfio: true, devices: [{ ...nvidia, driver: 'vfio-pci', group: 1 }] },
      /\/dev\/vfio\/1 does not exist/,
    ],
  ];
  for (const [name, tree, why] of cases) {
    const root = fixture(tree);
    const [g] = fingerprintGpus(root);
    assert.equal(g?.passthrough, false, name);
    assert.match(g?.reason ?? '', why, name);
    assert.throws(
      () => assertGpusPassable(['0000:01:00.0'], 'vm-1', root),
      (e: unknown) => e instanceof FormError && e.code === 'VM_GPU_UNAVAILABLE' && why.test(e.message),
      name,
    );
  }
});

test('only display controllers (class 0x03xx) count; odd sysfs entries are skipped, not trusted', () => {
  const root = fixture({
    vfio: true,
    devices: [
      { address: '0000:00:02.0', class: '0x030000', vendor: '0x8086', device: '0x46a6', driver: 'i915', group: 0 },
      { address: '0000:00:03.0', class: '0x020000', driver: 'e1000', group: 3 },
      { address: '0000:00:04.0', class: '0xffff00' },
      { address: '0000:00:05.0', class: 'garbage', group: 5 },
      { address: '0000:00:06.0', class: '0x030200', vendor: '0x10de', device: 'nonsense' },
    ],
  });
  const gpus = fingerprintGpus(root);
  assert.deepEqual(
    gpus.map((g) => [g.address, g.vendor, g.driver, g.passthrough]),
    [['0000:00:02.0', '8086', 'i915', false]],
  );
  // No PCI tree at all (a container): no GPU, no error.
  assert.deepEqual(fingerprintGpus(join(root, 'nowhere')), []);
  assert.match(describeGpus([]), /^no GPU/);
});

test('this host: the real probe runs and reports what it finds (none on these test machines is fine)', () => {
  const gpus = fingerprintGpus('/');
  for (const g of gpus) assert.match(g.address, /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/);
  assert.equal(typeof describeGpus(gpus), 'string');
});

test('pickGpus gives free passthrough GPUs of the vendor, else VM_GPU_UNAVAILABLE with why', () => {
  const g = (address: string, vendor: string, passthrough = true) => ({
    address,
    vendor,
    device: '0001',
    iommuGroup: 1,
    driver: passthrough ? 'vfio-pci' : 'nvidia',
    passthrough,
    ...(passthrough ? {} : { reason: 'it is bound to nvidia, not vfio-pci' }),
  });
  const found = [
    g('0000:02:00.0', '10de'),
    g('0000:01:00.0', '10de'),
    g('0000:03:00.0', '1002'),
    g('0000:04:00.0', '10de', false),
  ];
  assert.deepEqual(pickGpus(found, new Set(), { count: 2, vendor: 'nvidia' }, 'vm-1'), [
    '0000:01:00.0',
    '0000:02:00.0',
  ]);
  assert.deepEqual(pickGpus(found, new Set(['0000:01:00.0']), { count: 1 }, 'vm-1'), ['0000:02:00.0']);
  const refused = (re: RegExp) => (e: unknown) =>
    e instanceof FormError && e.code === 'VM_GPU_UNAVAILABLE' && re.test(e.message);
  assert.throws(
    () => pickGpus(found, new Set(['0000:01:00.0']), { count: 2, vendor: 'nvidia' }, 'vm-1'),
    refused(
      /Cannot give VM vm-1 2 nvidia GPUs: 0000:02:00.0 is free; 0000:01:00.0 is given to another VM; 0000:04:00.0: it is bound to nvidia/,
    ),
  );
  assert.throws(
    () => pickGpus(found, new Set(), { count: 1, vendor: 'intel' }, 'vm-1'),
    refused(/no GPU of that vendor/),
  );
  assert.throws(() => pickGpus([], new Set(), { count: 1 }, 'vm-1'), refused(/this host has no GPU/));
});

test('vfioArgs: one vfio-pci device per GPU; a comma or other junk in an address is refused; microvm has no PCI', () => {
  assert.deepEqual(vfioArgs(undefined, 'pc'), []);
  assert.deepEqual(vfioArgs(['0000:01:00.0', '0000:02:00.0'], 'q35'), [
    '-device',
    'vfio-pci,host=0000:01:00.0',
    '-device',
    'vfio-pci,host=0000:02:00.0',
  ]);
  for (const bad of ['0000:01:00.0,romfile=/etc/shadow', '01:00.0', '0000:01:00.8', '../../0000:01:00.0']) {
    assert.throws(
      () => vfioArgs([bad], 'pc', 'vm-1'),
      (e: unknown) => e instanceof FormError && e.code === 'VM_BAD_ARGUMENT',
    );
  }
  assert.throws(() => vfioArgs(['0000:01:00.0', '0000:01:00.0'], 'pc'), /distinct/);
  assert.throws(
    () => vfioArgs(['0000:01:00.0'], 'microvm'),
    (e: unknown) => e instanceof FormError && e.code === 'VM_GPU_UNAVAILABLE',
  );
});

function driverSpec(dir: string, id: string, gpus: string[]): DriverVmSpec {
  const base = join(dir, 'base.qcow2');
  if (!existsSync(base)) execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '4M'], { stdio: 'ignore' });
  mkdirSync(join(dir, id), { recursive: true });
  return {
    id,
    name: id,
    vcpu: 1,
    memMiB: 128,
    dir: join(dir, id),
    kernel: join(dir, 'vmlinuz'),
    cmdline: 'console=ttyS0',
    baseDisk: base,
    baseDiskFormat: 'qcow2',
    diskGiB: 1,
    network: { mode: 'user', forwards: [], mac: macFor(id) },
    agentChannel: 'org.qemu.guest_agent.0',
    gpus,
  };
}

test('QEMU argv: the GPU is passed with -device vfio-pci,host=… after the NIC; a hostile address never reaches argv', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fdg-gpu-argv-'));
  roots.push(dir);
  const driver = new QemuDriver({ logger: createLogger('silent'), accel: 'tcg' });
  const vm = await driver.create(driverSpec(dir, 'gpu-argv', ['0000:01:00.0']));
  const argv = qemuArgv(vm, { incoming: false, machine: 'q35' });
  const at = argv.indexOf('vfio-pci,host=0000:01:00.0');
  assert.ok(at > 0 && argv[at - 1] === '-device', argv.join(' '));
  assert.ok(at > argv.findIndex((a) => a.startsWith('virtio-net-pci')), 'after the NIC');
  assert.deepEqual(
    qemuArgv({ ...vm, spec: { ...vm.spec, gpus: [] } }, { incoming: false }).filter((a) => a.includes('vfio')),
    [],
  );
  vm.spec.gpus = ['0000:01:00.0,x-igd-opregion=on'];
  assert.throws(
    () => qemuArgv(vm, { incoming: false }),
    (e: unknown) => e instanceof FormError && e.code === 'VM_BAD_ARGUMENT',
  );
  await driver.close();
});

test('QemuDriver.start refuses a GPU the host cannot pass through, before QEMU runs (what a forged GPU claim ends in)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fdg-gpu-start-'));
  roots.push(dir);
  // The node "has" a GPU, but it is bound to the host driver: the boot must fail with the reason.
  const root = fixture({ vfio: true, devices: [{ ...nvidia, driver: 'nvidia', group: 1 }], devVfio: [1] });
  const before = process.env.FORM_GPU_ROOT;
  process.env.FORM_GPU_ROOT = root;
  try {
    const driver = new QemuDriver({ logger: createLogger('silent'), accel: 'tcg' });
    const vm = await driver.create(driverSpec(dir, 'gpu-start', ['0000:01:00.0']));
    await assert.rejects(
      driver.start(vm),
      (e: unknown) => e instanceof FormError && e.code === 'VM_GPU_UNAVAILABLE' && /bound to nvidia/.test(e.message),
    );
    assert.equal(existsSync(join(vm.spec.dir, 'qemu.log')), false, 'QEMU was never started');
    // A GPU that is not there at all (the node lied about it).
    vm.spec.gpus = ['0000:09:00.0'];
    await assert.rejects(driver.start(vm), /Cannot start VM gpu-start with GPU 0000:09:00.0: no such GPU on this host/);
    await driver.close();
  } finally {
    if (before === undefined) delete process.env.FORM_GPU_ROOT;
    else process.env.FORM_GPU_ROOT = before;
  }
});
