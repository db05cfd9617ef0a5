import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describeGpuRequest, FormError, type GpuDevice, type GpuRequest, gpuMatchesVendor } from '@formation/interface';

/**
 * GPUs of this host and whether a VM can be given one (VFIO passthrough), read from sysfs: a PCI
 * display controller (class 0x03xx) under `sys/bus/pci/devices`, its vendor/device ids, bound driver and
 * IOMMU group. Passthrough needs all of: the IOMMU on (`sys/kernel/iommu_groups` not empty), the vfio-pci
 * driver loaded (`sys/bus/pci/drivers/vfio-pci`), the GPU bound to it, every other device of its IOMMU
 * group bound to vfio-pci (or to nothing, or a PCI bridge: a *viable* group, as VFIO requires), and the
 * group's `/dev/vfio/<group>`. Everything is read below `root` (default `/`, or `FORM_GPU_ROOT`), so the
 * same code runs over fixture trees in tests.
 *
 * @example fingerprintGpus() // [{ address: '0000:01:00.0', vendor: '10de', device: '2204', iommuGroup: 12, driver: 'vfio-pci', passthrough: true }]
 */
export function fingerprintGpus(root: string = defaultGpuRoot()): GpuDevice[] {
  const devices = join(root, 'sys/bus/pci/devices');
  let names: string[];
  try {
    names = readdirSync(devices).sort();
  } catch {
    return []; // no PCI bus visible (a container, a sandbox): no GPU
  }
  const iommu = listDir(join(root, 'sys/kernel/iommu_groups')).length > 0;
  const vfioDriver = existsSync(join(root, 'sys/bus/pci/drivers/vfio-pci'));
  const gpus: GpuDevice[] = [];
  for (const address of names) {
    if (!PCI_ADDRESS.test(address)) continue;
    const dir = join(devices, address);
    const cls = readHex(join(dir, 'class'));
    if (cls === undefined || cls >> 16 !== 0x03) continue;
    const vendor = readId(join(dir, 'vendor'));
    const device = readId(join(dir, 'device'));
    if (!vendor || !device) continue;
    const driver = linkName(join(dir, 'driver'));
    const group = linkName(join(dir, 'iommu_group'));
    const iommuGroup = group !== null && /^\d{1,7}$/.test(group) ? Number(group) : null;
    const reason = passthroughProblem(root, { address, driver, iommuGroup, iommu, vfioDriver });
    gpus.push({
      address,
      vendor,
      device,
      iommuGroup,
      driver: driver !== null && /^[A-Za-z0-9_.-]{1,64}$/.test(driver) ? driver : null,
      passthrough: reason === undefined,
      ...(reason ? { reason } : {}),
    });
  }
  return gpus.slice(0, 16);
}

/** The sysfs root GPUs are read from: `FORM_GPU_ROOT` (a fixture tree in tests) or `/`. */
export function defaultGpuRoot(): string {
  return process.env.FORM_GPU_ROOT || '/';
}

/** A PCI address as sysfs names devices and QEMU's `vfio-pci,host=` takes it (nothing else: no comma). */
export const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** Drivers a device of a GPU's IOMMU group may have for the group to be viable (none is fine too). */
const VIABLE_DRIVERS = new Set(['vfio-pci', 'pci-stub']);

function passthroughProblem(
  root: string,
  d: { address: string; driver: string | null; iommuGroup: number | null; iommu: boolean; vfioDriver: boolean },
): string | undefined {
  if (!d.iommu || d.iommuGroup === null) {
    return 'the IOMMU is off: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on) iommu=pt';
  }
  if (!d.vfioDriver) return 'the vfio-pci driver is not loaded: modprobe vfio-pci';
  if (d.driver !== 'vfio-pci') {
    return `it is bound to ${d.driver ?? 'no driver'}, not vfio-pci: echo vfio-pci > /sys/bus/pci/devices/${d.address}/driver_override, then unbind it and echo ${d.address} > /sys/bus/pci/drivers_probe`;
  }
  const groupDir = join(root, 'sys/kernel/iommu_groups', String(d.iommuGroup), 'devices');
  for (const other of listDir(groupDir).sort()) {
    if (other === d.address) continue;
    const od = join(root, 'sys/bus/pci/devices', other);
    const cls = readHex(join(od, 'class'));
    if (cls !== undefined && cls >> 8 === 0x0604) continue; // a PCI bridge does not break the group
    const drv = linkName(join(od, 'driver'));
    if (drv !== null && !VIABLE_DRIVERS.has(drv)) {
      return `IOMMU group ${d.iommuGroup} is not viable: ${other} in it is bound to ${drv}; bind every device of the group to vfio-pci`;
    }
  }
  if (!existsSync(join(root, 'dev/vfio', String(d.iommuGroup)))) {
    return `/dev/vfio/${d.iommuGroup} does not exist: the vfio-pci binding did not complete`;
  }
  return undefined;
}

/**
 * Which GPUs a new VM gets: `req.count` passthrough-capable GPUs of the requested vendor that no other
 * VM of this host holds (lowest addresses first). VM_GPU_UNAVAILABLE saying why when there are not
 * enough: the replica's boot fails and placement moves it to another GPU node.
 *
 * @example pickGpus(fingerprintGpus(), new Set(['0000:01:00.0']), { count: 1 }, 'vm-1') // ['0000:02:00.0']
 */
export function pickGpus(
  found: readonly GpuDevice[],
  inUse: ReadonlySet<string>,
  req: GpuRequest,
  vm: string,
): string[] {
  const kind = found.filter((g) => gpuMatchesVendor(g, req.vendor));
  const free = kind.filter((g) => g.passthrough && !inUse.has(g.address)).map((g) => g.address);
  if (free.length >= req.count) return free.sort().slice(0, req.count);
  const why =
    found.length === 0
      ? 'this host has no GPU'
      : kind.length === 0
        ? `this host has no GPU of that vendor (it has ${found.map((g) => `${g.vendor}:${g.device}`).join(', ')})`
        : kind
            .map((g) =>
              inUse.has(g.address)
                ? `${g.address} is given to another VM`
                : g.passthrough
                  ? `${g.address} is free`
                  : `${g.address}: ${g.reason ?? 'cannot be passed through'}`,
            )
            .join('; ');
  throw new FormError('VM_GPU_UNAVAILABLE', `Cannot give VM ${vm} ${describeGpuRequest(req)}: ${why}`, {
    hint: 'The node reported a GPU it cannot pass through now: the replica is placed on another GPU node. Run `form doctor` on this node.',
    details: { gpus: found.map((g) => g.address), inUse: [...inUse] },
  });
}

/**
 * Before QEMU starts a VM with GPUs: each one must still be passable (bound to vfio-pci, viable group,
 * /dev/vfio node). Throws VM_GPU_UNAVAILABLE naming the GPU and the fix.
 */
export function assertGpusPassable(addresses: readonly string[], vm: string, root: string = defaultGpuRoot()): void {
  if (addresses.length === 0) return;
  const found = fingerprintGpus(root);
  for (const a of addresses) {
    const g = found.find((x) => x.address === a);
    if (!g || !g.passthrough) {
      throw new FormError(
        'VM_GPU_UNAVAILABLE',
        `Cannot start VM ${vm} with GPU ${a}: ${g ? g.reason : 'no such GPU on this host'}`,
        { hint: 'Fix the host (see `form doctor`) or let the replica be placed on another GPU node.' },
      );
    }
  }
}

/**
 * QEMU arguments that pass GPUs through: one `-device vfio-pci,host=<address>` each. Addresses are
 * checked (a comma would add QEMU options); the microvm machine has no PCI bus and cannot take one.
 *
 * @example vfioArgs(['0000:01:00.0'], 'pc') // ['-device', 'vfio-pci,host=0000:01:00.0']
 */
export function vfioArgs(addresses: readonly string[] | undefined, machine: string, vm = 'vm'): string[] {
  if (!addresses || addresses.length === 0) return [];
  if (machine === 'microvm') {
    throw new FormError('VM_GPU_UNAVAILABLE', `Cannot pass a GPU to VM ${vm}: the microvm machine has no PCI bus`, {
      hint: 'Run GPU instances with the pc or q35 machine (FORM_QEMU_MACHINE).',
    });
  }
  if (addresses.length > 16 || new Set(addresses).size !== addresses.length) {
    throw new FormError('VM_BAD_ARGUMENT', `Cannot pass GPUs to VM ${vm}: give at most 16 distinct PCI addresses`);
  }
  return addresses.flatMap((a) => {
    if (!PCI_ADDRESS.test(a)) {
      throw new FormError(
        'VM_BAD_ARGUMENT',
        `Cannot pass GPU ${JSON.stringify(a)} to VM ${vm}: not a PCI address like 0000:01:00.0`,
      );
    }
    return ['-device', `vfio-pci,host=${a}`];
  });
}

/** One line per GPU for `form doctor`: what was found and whether a VM can be given it. */
export function describeGpus(gpus: readonly GpuDevice[]): string {
  if (gpus.length === 0) return 'no GPU (no PCI display controller in sysfs): GPU instances are not placed here';
  return gpus
    .map(
      (g) =>
        `${g.address} ${g.vendor}:${g.device} group ${g.iommuGroup ?? '-'} driver ${g.driver ?? '-'}: ${g.passthrough ? 'VFIO passthrough ready' : `no passthrough: ${g.reason}`}`,
    )
    .join('\n');
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readHex(file: string): number | undefined {
  try {
    const s = readFileSync(file, 'utf8').trim();
    return /^0x[0-9a-fA-F]{1,8}$/.test(s) ? Number.parseInt(s.slice(2), 16) : undefined;
  } catch {
    return undefined;
  }
}

function readId(file: string): string | undefined {
  const n = readHex(file);
  return n !== undefined && n <= 0xffff ? n.toString(16).padStart(4, '0') : undefined;
}

function linkName(link: string): string | null {
  try {
    return basename(readlinkSync(link));
  } catch {
    return null;
  }
}
