import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { access, constants, readdir, statfs } from 'node:fs/promises';
import { createServer } from 'node:net';
import { freemem, totalmem } from 'node:os';
import { promisify } from 'node:util';
import { DEFAULT_PORTS, GPU_VENDORS, type GpuDevice } from '@formation/interface';
import { fingerprintGpus, probeAccel } from '@formation/vmm';

/** Where the VMM caches its accelerator probe (its default cache dir). */
const ACCEL_CACHE = '/var/tmp/formation-vmm-cache/accel-probe.json';

const run = promisify(execFile);

/** One thing `form node doctor` checked, and how to fix it when it is not ok. */
export interface Finding {
  id: string;
  status: 'ok' | 'warn' | 'fail';
  summary: string;
  fix?: string;
}

/** Raw facts about the host, gathered by `probeHost` (the only part that touches the system). */
export interface HostProbe {
  isRoot: boolean;
  nodeVersion: string;
  programs: Record<string, boolean>;
  kvm: 'usable' | 'unusable' | 'absent';
  kvmDetail: string;
  tun: boolean;
  kernelWireGuard: boolean;
  guestKernel: string | null;
  /** port -> free? (tcp unless the key ends in /udp) */
  ports: Record<string, boolean>;
  diskFreeGiB: number;
  dataDir: string;
  memFreeGiB: number;
  memTotalGiB: number;
  /** The GPUs found in sysfs (`fingerprintGpus`); absent: not probed. */
  gpus?: GpuDevice[] | undefined;
}

export const REQUIRED_PROGRAMS: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  'mkfs.ext4': 'e2fsprogs',
  mmdebstrap: 'mmdebstrap',
  ip: 'iproute2',
  wg: 'wireguard-tools',
  'wireguard-go': 'wireguard-go',
  ssh: 'openssh-client',
  busybox: 'busybox-static',
  runc: 'runc',
};

/** Finding `id`: ok with `okSummary` when `ok`, else `problem` (its status, summary and fix). */
function check(id: string, ok: boolean, okSummary: string, problem: Omit<Finding, 'id'>): Finding {
  return ok ? { id, status: 'ok', summary: okSummary } : { id, ...problem };
}

/** Turn probe facts into findings. Pure: tested without touching the host. */
export function evaluateHost(p: HostProbe): Finding[] {
  const f: Finding[] = [];
  const [major] = p.nodeVersion.replace(/^v/, '').split('.').map(Number);
  f.push(
    check('node', (major ?? 0) >= 22, `Node ${p.nodeVersion}`, {
      status: 'fail',
      summary: `Node ${p.nodeVersion} is too old (need 22.18+; the project installs Node 24)`,
      fix: 'Run `bash scripts/setup.sh`, then use `npx form` from the repository root.',
    }),
  );
  f.push(
    check('root', p.isRoot, 'running as root (needed for namespaces, TAP devices and WireGuard)', {
      status: 'warn',
      summary: 'not root: VMs can only use user-mode networking; formnet, TAP and namespaces need root',
      fix: 'Run the node as root (or with CAP_NET_ADMIN).',
    }),
  );
  const missing = Object.entries(p.programs)
    .filter(([, ok]) => !ok)
    .map(([name]) => name);
  f.push(
    check('programs', missing.length === 0, `required programs present (${Object.keys(p.programs).length})`, {
      status: 'fail',
      summary: `missing programs: ${missing.join(', ')}`,
      fix: `apt-get install -y ${[...new Set(missing.map((m) => REQUIRED_PROGRAMS[m] ?? m))].join(' ')} (or run scripts/setup.sh)`,
    }),
  );
  f.push(
    check('kvm', p.kvm === 'usable', `KVM usable: VMs boot in about a second (${p.kvmDetail})`, {
      status: 'warn',
      summary:
        `KVM ${p.kvm === 'absent' ? 'absent' : 'present but not working'} (${p.kvmDetail}): VMs run under QEMU software ` +
        'emulation (TCG), about 5-7 s to boot and several times slower CPU',
      fix:
        p.kvm === 'absent'
          ? 'Enable virtualization in the BIOS / use a host with nested virtualization and load kvm_intel or kvm_amd.'
          : 'Nested KVM is broken on this host; use bare metal or a VM type with working nested virtualization.',
    }),
  );
  f.push(
    check('tun', p.tun, '/dev/net/tun present (TAP devices, wireguard-go)', {
      status: 'fail',
      summary: '/dev/net/tun missing',
      fix: 'modprobe tun (or pass --device /dev/net/tun to the container).',
    }),
  );
  if (p.kernelWireGuard) f.push({ id: 'wireguard', status: 'ok', summary: 'kernel WireGuard available' });
  else if (p.programs['wireguard-go'])
    f.push({
      id: 'wireguard',
      status: 'ok',
      summary: 'no kernel WireGuard module; formnet uses wireguard-go (userspace, ~400 Mbit/s here)',
    });
  else
    f.push({
      id: 'wireguard',
      status: 'fail',
      summary: 'no WireGuard: neither the kernel module nor wireguard-go',
      fix: 'apt-get install -y wireguard-go wireguard-tools',
    });
  f.push(
    check('guest-kernel', Boolean(p.guestKernel), `guest kernel ${p.guestKernel}`, {
      status: 'fail',
      summary: 'no Debian cloud kernel in /boot to boot instances with',
      fix: 'apt-get install -y linux-image-cloud-amd64',
    }),
  );
  const busy = Object.entries(p.ports)
    .filter(([, free]) => !free)
    .map(([port]) => port);
  f.push(
    check('ports', busy.length === 0, `ports free: ${Object.keys(p.ports).join(', ')}`, {
      status: 'warn',
      summary: `ports in use: ${busy.join(', ')} (a node already running, or another program)`,
      fix: 'Check `form node status`; stop the other program or set other ports (FORM_PORT_OFFSET or the config file).',
    }),
  );
  f.push(
    check('disk', p.diskFreeGiB >= 10, `${p.diskFreeGiB.toFixed(1)} GiB free in ${p.dataDir}`, {
      status: p.diskFreeGiB >= 2 ? 'warn' : 'fail',
      summary: `only ${p.diskFreeGiB.toFixed(1)} GiB free in ${p.dataDir} (Formpacks take ~0.2-1 GiB each, VM overlays grow)`,
      fix: 'Free space or point FORM_HOME at a larger disk.',
    }),
  );
  f.push(
    check('memory', p.memFreeGiB >= 1, `${p.memFreeGiB.toFixed(1)} of ${p.memTotalGiB.toFixed(1)} GiB memory free`, {
      status: 'warn',
      summary: `only ${p.memFreeGiB.toFixed(1)} GiB memory free; each instance needs its MEM`,
    }),
  );
  if (p.gpus) f.push(gpuFinding(p.gpus));
  f.push({
    id: 'bridge',
    status: 'ok',
    summary:
      'no host bridge needed: the node makes its own bridge (and, with --netns, its own namespace) for instances',
  });
  return f;
}

/** What the node can offer GPU instances: nothing, GPUs ready for VFIO passthrough, or GPUs and why not. */
export function gpuFinding(gpus: readonly GpuDevice[]): Finding {
  if (gpus.length === 0) {
    return {
      id: 'gpu',
      status: 'ok',
      summary: 'no GPU found (no PCI display controller): GPU instances are placed on other nodes',
    };
  }
  const name = (g: GpuDevice) =>
    `${g.address} (${GPU_VENDORS[g.vendor] ?? g.vendor} ${g.vendor}:${g.device}, IOMMU group ${g.iommuGroup ?? '-'}, driver ${g.driver ?? '-'})`;
  const ready = gpus.filter((g) => g.passthrough);
  const not = gpus.filter((g) => !g.passthrough);
  if (not.length === 0)
    return { id: 'gpu', status: 'ok', summary: `GPUs ready for VFIO passthrough: ${ready.map(name).join('; ')}` };
  return {
    id: 'gpu',
    status: 'warn',
    summary: `${not.length} of ${gpus.length} GPU(s) cannot be passed to a VM: ${not.map(name).join('; ')}`,
    fix: not.map((g) => `${g.address}: ${g.reason}`).join('; '),
  };
}

async function has(program: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${program}`]);
    return true;
  } catch {
    return false;
  }
}

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '0.0.0.0', () => s.close(() => resolve(true)));
  });
}

/** Find the newest Debian cloud kernel in /boot (what instances boot). */
export async function findGuestKernel(): Promise<string | null> {
  try {
    const files = (await readdir('/boot')).filter((f) => /^vmlinuz-.*cloud-amd64$/.test(f)).sort();
    const last = files.at(-1);
    return last ? `/boot/${last}` : null;
  } catch {
    return null;
  }
}

/**
 * Is KVM really usable? /dev/kvm can exist and still fail (broken nested virtualization). The VMM's
 * probe decides (PLATFORM.md §1) and caches its answer per host, so the doctor and the node agree.
 */
export async function probeKvm(kernel: string | null): Promise<{ kvm: HostProbe['kvm']; detail: string }> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return { kvm: 'absent', detail: 'no accessible /dev/kvm' };
  }
  if (!kernel) return { kvm: 'unusable', detail: 'no guest kernel to probe with' };
  const r = await probeAccel({ kernel, cacheFile: ACCEL_CACHE });
  return { kvm: r.accel === 'kvm' ? 'usable' : 'unusable', detail: r.reason };
}

async function kernelWireGuard(): Promise<boolean> {
  try {
    await run('sh', ['-c', 'ip link add formdoctorwg0 type wireguard && ip link del formdoctorwg0']);
    return true;
  } catch {
    return false;
  }
}

/** Gather the facts. Side effects are limited to short-lived probes (a probe VM, a WireGuard link created and removed). */
export async function probeHost(
  dataDir: string,
  opts: { portOffset?: number; skipKvmProbe?: boolean } = {},
): Promise<HostProbe> {
  const offset = opts.portOffset ?? 0;
  const programs: Record<string, boolean> = {};
  const found = await Promise.all(Object.keys(REQUIRED_PROGRAMS).map(async (p) => [p, await has(p)] as const));
  for (const [p, ok] of found) programs[p] = ok;
  const guestKernel = await findGuestKernel();
  const kvm = opts.skipKvmProbe ? { kvm: 'unusable' as const, detail: 'probe skipped' } : await probeKvm(guestKernel);
  const ports: Record<string, boolean> = {};
  for (const port of [
    DEFAULT_PORTS.formnet,
    DEFAULT_PORTS.vmm,
    DEFAULT_PORTS.pack,
    DEFAULT_PORTS.state,
    DEFAULT_PORTS.p2p,
  ]) {
    ports[String(port + offset)] = await tcpFree(port + offset);
  }
  ports[`${DEFAULT_PORTS.wireguard}/udp`] = await udpFree(DEFAULT_PORTS.wireguard);
  let diskFreeGiB = 0;
  let dir = dataDir;
  for (;;) {
    try {
      const s = await statfs(dir);
      diskFreeGiB = (s.bavail * s.bsize) / 2 ** 30;
      break;
    } catch {
      const parent = dir.replace(/\/[^/]+\/?$/, '') || '/';
      if (parent === dir) break;
      dir = parent;
    }
  }
  let tun = false;
  try {
    await access('/dev/net/tun');
    tun = true;
  } catch {}
  return {
    isRoot: process.getuid?.() === 0,
    nodeVersion: process.version,
    programs,
    kvm: kvm.kvm,
    kvmDetail: kvm.detail,
    tun,
    kernelWireGuard: process.getuid?.() === 0 ? await kernelWireGuard() : false,
    guestKernel,
    ports,
    diskFreeGiB,
    dataDir,
    memFreeGiB: freemem() / 2 ** 30,
    memTotalGiB: totalmem() / 2 ** 30,
    gpus: fingerprintGpus(),
  };
}
