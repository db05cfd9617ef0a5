import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FormError, GUEST_READY_MARKER } from '@formation/interface';

/**
 * What runs inside a Formation instance, and the contract between host and guest.
 * The builder (`@formation/pack`) installs these files into every Formpack; the VMM boots it with
 * `GUEST_CONTRACT.cmdline` plus `kernelParams(...)` and talks to qemu-ga on `GUEST_CONTRACT.agentChannel`.
 *
 * @example
 * const append = `${GUEST_CONTRACT.cmdline} ${kernelParams({ ip: '10.128.0.5/9', gw: '10.128.0.1', name: 'web', id: 'i-1' })}`;
 */
export const GUEST_CONTRACT = {
  /** PID 1 inside the image (POSIX sh). */
  init: '/sbin/form-init',
  /** Clean power-off: run it with qemu-ga guest-exec (`/bin/sh -c /sbin/form-poweroff` or directly). */
  poweroff: '/sbin/form-poweroff',
  /** The kernel command line the image expects; the VMM appends per-instance `vm_*` parameters. */
  cmdline: 'console=ttyS0 root=/dev/vda rw panic=-1',
  /** Attestation key + sealed secrets helper (`pubkey`, `secret-put`; see @formation/attest). */
  attest: '/usr/sbin/form-attest',
  /** Where opened secrets land (mode 0600, tmpfs). */
  secretsDir: '/run/form/secrets',
  /** Encrypted data disk helper (`init`, `status`, `unlock KEYFILE`). */
  disk: '/usr/sbin/form-disk',
  /** Reserved secret name: the data disk key (32 bytes); delivering it unlocks + mounts the disk. */
  diskKeySecret: 'form-disk-key',
  /** virtio serial of the data disk (the VMM's second disk); the guest finds it by this, not by name. */
  dataDiskSerial: 'form-data',
  /** HTTPS in the guest (Formfile `HTTPS <port>`): `daemon`, `configure DIR CA_B64|- NAME...`, `status`, `renew`. */
  tls: '/usr/sbin/form-tls',
  /** The app port the in-guest TLS front forwards to; present only in images that opted in. */
  httpsPortFile: '/etc/form/https',
  /** Debian packages the builder adds to an image that opted in (ACME client + ALPN responder, TLS front). */
  httpsPackages: ['uacme', 'socat'],
  /** Where the in-guest TLS listens (ualpn; the ingress passes :443 through to it). */
  httpsGuestPort: 443,
  /** Where the unlocked data disk is mounted (an empty read-only placeholder while locked). */
  dataMount: '/data',
  agent: 'qemu-ga',
  /** virtio-serial port name of the agent (`-device virtserialport,name=...`). */
  agentChannel: 'org.qemu.guest_agent.0',
  sshd: 'openssh',
  /** Printed on /dev/console (serial) when init has started everything: `FORM-INIT-READY <uptime>`. */
  readyMarker: GUEST_READY_MARKER,
  /** Printed by the initramfs when it cannot mount the root filesystem (then it powers off). */
  initramfsErrorMarker: 'FORM-INITRAMFS-ERROR',
  /** ENTRYPOINT output (stdout+stderr, appended; read with guest-file-read). */
  entrypointLog: '/var/log/form/entrypoint.log',
  /** `running <pid> <restarts>` | `exited <code> <restarts>` | `none 0 0` (no ENTRYPOINT). */
  entrypointState: '/run/form/entrypoint.state',
  /** Instance id given with vm_id (absent when not given). */
  instanceIdFile: '/run/form/instance-id',
  /** Defaults when the host passes no vm_* parameters: QEMU user-mode networking. */
  defaults: { ip: '10.0.2.15/24', gw: '10.0.2.2', dns: '10.0.2.3' },
} as const;

const filesDir = fileURLToPath(new URL('../files/', import.meta.url));

/** A file the builder installs into the image. */
export interface GuestFile {
  /** Absolute path on this machine. */
  source: string;
  /** Absolute path inside the image. */
  target: string;
  mode: number;
}

/** Files every Formpack image carries. */
export function guestFiles(): GuestFile[] {
  return [
    { source: `${filesDir}form-init`, target: GUEST_CONTRACT.init, mode: 0o755 },
    { source: `${filesDir}form-poweroff`, target: GUEST_CONTRACT.poweroff, mode: 0o755 },
    { source: `${filesDir}form-attest`, target: GUEST_CONTRACT.attest, mode: 0o755 },
    { source: `${filesDir}form-disk`, target: GUEST_CONTRACT.disk, mode: 0o755 },
    { source: `${filesDir}form-tls`, target: GUEST_CONTRACT.tls, mode: 0o755 },
  ];
}

/** The initramfs `/init` script (busybox sh): loads `/modules.list`, mounts root, switch_roots to form-init. */
export function initramfsInit(): string {
  return readFileSync(`${filesDir}initramfs-init`, 'utf8');
}

/** Kernel modules the initramfs loads (with their dependencies, resolved per kernel by the builder). */
export const INITRAMFS_MODULES = [
  'virtio_pci',
  'virtio_mmio',
  'virtio_blk',
  'virtio_net',
  'ext4',
  'virtio_console',
  'virtio_rng',
  // the encrypted data disk (form-disk): dm-crypt, XTS, the AF_ALG interfaces cryptsetup uses, AES-NI
  // when the vCPU has it (aes_generic is built in; a module that does not load is skipped)
  'dm_crypt',
  'xts',
  'algif_skcipher',
  'algif_hash',
  'aesni_intel',
] as const;

export interface InstanceParams {
  /** `A.B.C.D/NN` */
  ip?: string;
  /** Gateway IP, or 'none' for no default route. */
  gw?: string;
  /** DNS server IP, or 'none'. */
  dns?: string;
  /** Hostname (DNS label). */
  name?: string;
  /** Instance id. */
  id?: string;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;
const ID = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * The `vm_*` kernel parameters for one instance, validated (no spaces or dots in names, so the
 * kernel does not treat them as module parameters).
 *
 * @example
 * kernelParams({ ip: '10.128.0.5/9', gw: 'none', dns: 'none', name: 'web-1', id: 'abc' })
 * // 'vm_ip=10.128.0.5/9 vm_gw=none vm_dns=none vm_name=web-1 vm_id=abc'
 */
export function kernelParams(p: InstanceParams): string {
  const out: string[] = [];
  if (p.ip !== undefined) {
    const [addr, len, ...rest] = p.ip.split('/');
    const n = Number(len);
    if (!addr || !IPV4.test(addr) || !Number.isInteger(n) || n < 0 || n > 32 || rest.length > 0) {
      throw new FormError('BAD_REQUEST', `Cannot pass vm_ip=${p.ip}: expected A.B.C.D/NN`);
    }
    out.push(`vm_ip=${p.ip}`);
  }
  for (const [k, v] of [
    ['gw', p.gw],
    ['dns', p.dns],
  ] as const) {
    if (v === undefined) continue;
    if (v !== 'none' && !IPV4.test(v))
      throw new FormError('BAD_REQUEST', `Cannot pass vm_${k}=${v}: expected an IPv4 address or none`);
    out.push(`vm_${k}=${v}`);
  }
  if (p.name !== undefined) {
    if (!LABEL.test(p.name)) throw new FormError('BAD_REQUEST', `Cannot pass vm_name=${p.name}: not a DNS label`);
    out.push(`vm_name=${p.name}`);
  }
  if (p.id !== undefined) {
    if (!ID.test(p.id)) throw new FormError('BAD_REQUEST', `Cannot pass vm_id=${p.id}: use [A-Za-z0-9_-]`);
    out.push(`vm_id=${p.id}`);
  }
  return out.join(' ');
}

/** The ENTRYPOINT service state as read from `GUEST_CONTRACT.entrypointState`. */
export type EntrypointState =
  | { state: 'running'; pid: number; restarts: number }
  | { state: 'exited'; code: number; restarts: number }
  | { state: 'none'; restarts: 0 };

/** Parse the entrypoint state file's content; null when it is not in the expected shape. */
export function parseEntrypointState(text: string): EntrypointState | null {
  const [kind, a, b] = text.trim().split(/\s+/);
  const n = Number(a);
  const r = Number(b);
  if (!Number.isInteger(n) || !Number.isInteger(r)) return null;
  if (kind === 'running') return { state: 'running', pid: n, restarts: r };
  if (kind === 'exited') return { state: 'exited', code: n, restarts: r };
  if (kind === 'none') return { state: 'none', restarts: 0 };
  return null;
}
