// Creating a VM, the parts that are not the manager's state: where its kernel, disk and defaults come
// from (a Formpack, a .form image or a plain image), validation of the request (resources, name,
// egress), addresses already taken, the driver spec and the measurement. Pure but for reading files.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FormError, type GpuRequest, type Resources } from '@formation/interface';
import { sha256File } from '@formation/service/files';
import type { DriverVmSpec } from './driver.ts';
import { findImage, hostInitramfs, hostKernel, openFormImage, resolveFormpack } from './images.ts';
import type { VmNetAssignment } from './network.ts';
import type { VmMeasurement, VmRecord, VmSource } from './types.ts';

/** Body of POST /vms. */
export interface CreateVmRequest {
  /** Formpack id (a directory in formpacksDir). Exactly one of formpack / image. */
  formpack?: string | undefined;
  /** Image name in imagesDir (.img, .qcow2, .vmdk, .form). */
  image?: string | undefined;
  name?: string | undefined;
  resources?: Partial<Resources> | undefined;
  /** Guest TCP ports to forward from 127.0.0.1 in user-mode networking (default: 22 + the Formpack's EXPOSE). */
  forwardPorts?: number[] | undefined;
  /** For plain images: the init to switch_root into (default /sbin/init). */
  init?: string | undefined;
  restartPolicy?: 'never' | 'on-failure' | undefined;
  /**
   * Size of the VM's empty data disk in MiB (encrypted inside the guest; not measured). Default: the
   * VMM's `dataDiskMiB` for Formpack VMs, none for plain images. 0 = no data disk.
   */
  dataDiskMiB?: number | undefined;
  /** Start right away (default true). */
  start?: boolean | undefined;
  /** GPUs to pass through (VFIO): `count` free passthrough-capable GPUs of `vendor` on this host, else VM_GPU_UNAVAILABLE. */
  gpu?: GpuRequest | undefined;
  /**
   * false: the VM reaches formnet only (its neighbours, its gateway's DNS, other instances and members
   * over WireGuard), never the internet. Default true; a node with egress off gives none to any VM.
   */
  egress?: boolean | undefined;
}

/** What a new VM boots from, with the defaults its source gives. */
export interface VmBootSource {
  source: VmSource;
  kernel: string;
  initramfs: string | undefined;
  cmdline: string;
  disk: string;
  diskFormat: 'qcow2' | 'raw' | 'vmdk';
  base: Resources;
  agentChannel: string;
  ports: number[];
  defaultName: string;
  diskSha: string | null;
  isFormpack: boolean;
}

/** Where the manager finds sources (its options). */
export interface SourceDirs {
  formpacksDir: string;
  imagesDir: string;
  cacheDir: string;
  kernelPath?: string | undefined;
  initramfsPath?: string | undefined;
}

/** Resolve the Formpack or image of a create request (PACK_NOT_FOUND, NOT_FOUND, VM_IMAGE_INVALID, HOST_UNSUPPORTED). */
export async function resolveBootSource(req: CreateVmRequest, o: SourceDirs): Promise<VmBootSource> {
  const fromFormpack = (fp: ReturnType<typeof resolveFormpack>, source: VmSource): VmBootSource => ({
    isFormpack: true,
    source,
    kernel: fp.kernel,
    initramfs: fp.initramfs,
    cmdline: fp.manifest.cmdline,
    disk: fp.disk,
    diskFormat: 'qcow2',
    base: { ...fp.manifest.resources },
    agentChannel: fp.manifest.guest?.agentChannel ?? 'org.qemu.guest_agent.0',
    ports: [22, ...(fp.manifest.formfile?.expose ?? [])],
    defaultName: fp.manifest.name,
    diskSha: fp.manifest.artifacts.disk.sha256 ?? null,
  });
  if (req.formpack) {
    const fp = resolveFormpack(o.formpacksDir, req.formpack);
    return fromFormpack(fp, {
      kind: 'formpack',
      id: fp.manifest.id ?? req.formpack,
      name: fp.manifest.name,
      dir: fp.dir,
    });
  }
  const img = findImage(o.imagesDir, req.image as string);
  if (img.format === 'formpack') {
    const fp = await openFormImage(img, join(o.cacheDir, 'form-images'));
    return fromFormpack(fp, { kind: 'image', name: img.name, file: img.file, format: 'formpack' });
  }
  const source: VmSource = { kind: 'image', name: img.name, file: img.file, format: img.format };
  const k = o.kernelPath ?? hostKernel();
  if (!k || !existsSync(k)) {
    throw new FormError('HOST_UNSUPPORTED', `Cannot boot image ${img.name}: no kernel (set VMM_KERNEL_PATH)`);
  }
  return {
    isFormpack: false,
    source,
    kernel: k,
    initramfs: o.initramfsPath ?? (await hostInitramfs(k, o.cacheDir)),
    cmdline: `console=ttyS0 root=/dev/vda rw panic=-1 vm_init=${req.init ?? '/sbin/init'}`,
    disk: img.file,
    diskFormat: img.format,
    base: { vcpu: 1, memMiB: 256, diskGiB: 1 },
    agentChannel: 'org.qemu.guest_agent.0',
    ports: [22],
    defaultName: img.name.replace(/\.[^.]+$/, ''),
    diskSha: null,
  };
}

/** The source's resources overridden by the request's, each a positive integer, memory at least 64 MiB (BAD_REQUEST). */
export function vmResources(base: Resources, asked: Partial<Resources> | undefined): Resources {
  const resources = { ...base, ...(asked ?? {}) };
  for (const [k, v] of Object.entries(resources)) {
    if (!Number.isInteger(v) || v < 1)
      throw new FormError('BAD_REQUEST', `Cannot create a VM: ${k} must be a positive integer`);
  }
  if (resources.memMiB < 64) throw new FormError('BAD_REQUEST', 'Cannot create a VM: memMiB must be at least 64');
  return resources;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The VM's name: the asked one, else the source's name and part of the id; a DNS label (BAD_REQUEST). */
export function vmName(asked: string | undefined, defaultName: string, id: string): string {
  const name = (asked ?? `${sanitize(defaultName)}-${id.slice(3, 9)}`).toLowerCase();
  if (!NAME_RE.test(name)) {
    throw new FormError(
      'BAD_REQUEST',
      `Cannot create a VM named ${JSON.stringify(name)}: use a DNS label (a-z, 0-9, -)`,
    );
  }
  return name;
}

/** Addresses, MACs and TAPs the VMs of this node hold. */
export function takenAddresses(records: Iterable<VmRecord>): {
  ips: Set<string>;
  macs: Set<string>;
  taps: Set<string>;
} {
  const taken = { ips: new Set<string>(), macs: new Set<string>(), taps: new Set<string>() };
  for (const r of records) {
    taken.ips.add(r.network.ip.split('/')[0] as string);
    taken.macs.add(r.network.mac);
    if (r.network.tap) taken.taps.add(r.network.tap);
  }
  return taken;
}

/** The driver's view of a new VM. */
export function driverSpec(o: {
  id: string;
  name: string;
  resources: Resources;
  dir: string;
  src: VmBootSource;
  cmdline: string;
  dataDiskMiB: number;
  net: VmNetAssignment;
  gpus: string[] | undefined;
}): DriverVmSpec {
  const { id, name, resources, dir, src, net, gpus } = o;
  return {
    id,
    name,
    vcpu: resources.vcpu,
    memMiB: resources.memMiB,
    dir,
    kernel: src.kernel,
    initramfs: src.initramfs,
    cmdline: o.cmdline,
    baseDisk: src.disk,
    baseDiskFormat: src.diskFormat,
    diskGiB: resources.diskGiB,
    dataDiskMiB: o.dataDiskMiB,
    network:
      net.mode === 'user'
        ? { mode: 'user', forwards: net.forwards, mac: net.mac, restrict: net.egress === false }
        : { mode: 'tap', tap: net.tap as string, mac: net.mac, netns: net.netns },
    agentChannel: src.agentChannel,
    ...(gpus ? { gpus } : {}),
  };
}

/** What a VM boots, measured: kernel, initramfs and disk hashes, the command line's. */
export async function measureSpec(spec: DriverVmSpec, diskSha: string | null): Promise<VmMeasurement> {
  return {
    kernel: await sha256File(spec.kernel),
    initramfs: spec.initramfs ? await sha256File(spec.initramfs) : null,
    cmdline: createHash('sha256').update(spec.cmdline).digest('hex'),
    disk: diskSha,
  };
}

export function sanitize(s: string): string {
  return (
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 50) || 'vm'
  );
}
