import { resolve } from 'node:path';
import { FormError } from '@formation/interface';
import { TCG_TB_MIB } from './cgroup.ts';
import type { DriverNetwork, DriverVm, DriverVmSpec } from './driver.ts';
import { vfioArgs } from './gpu.ts';
import { isPort } from './network.ts';
import { safeRead } from './qemu-process.ts';

// QEMU's argv and the validation of every value spliced into it. Pure (but for the host TSC read).

/** The seccomp sandbox every QEMU runs under: no obsolete syscalls, no setuid, no fork/exec, no affinity/scheduler changes. */
export const QEMU_SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';
/**
 * The sandbox with `-runas`: QEMU installs its seccomp filter before it drops to the -runas user, so
 * `elevateprivileges=deny` kills it at its own setuid (SIGSYS, QEMU 7.2). After the drop every uid of
 * the process is unprivileged and it holds no capabilities, so set*id cannot regain root, and
 * spawn=deny still forbids executing a setuid binary.
 */
export const QEMU_SANDBOX_RUNAS = 'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `s` holds a control character (or a comma: QEMU's option separator). */
export function hasControlOrComma(s: string, comma = true): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || (comma && c === 0x2c)) return true;
  }
  return false;
}
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

function badArg(id: string, what: string, value: unknown, rule: string, action = 'start'): FormError {
  return new FormError('VM_BAD_ARGUMENT', `Cannot ${action} VM ${id}: ${what} ${JSON.stringify(value)} ${rule}`, {
    hint: 'Values spliced into QEMU options are checked: names [A-Za-z0-9._-], ports 1-65535, paths without commas.',
  });
}

/**
 * Check every value of a spec that ends up inside QEMU's argv. QEMU parses `-netdev`/`-drive`/`-device`
 * values as comma-separated options, so a comma in a name, path, MAC or port adds options of the
 * caller's choosing (`hostfwd=…,guestfwd=…-cmd:<host command>`). Throws VM_BAD_ARGUMENT.
 */
export function validateSpec(s: DriverVmSpec, action = 'start'): void {
  const id = typeof s.id === 'string' && NAME_RE.test(s.id) ? s.id : 'with a bad id';
  const bad = (what: string, value: unknown, rule: string): FormError => badArg(id, what, value, rule, action);
  if (!NAME_RE.test(String(s.id))) throw bad('id', s.id, 'is not a name (1-64 of [A-Za-z0-9._-])');
  if (!NAME_RE.test(String(s.name))) throw bad('name', s.name, 'is not a name (1-64 of [A-Za-z0-9._-])');
  if (!Number.isInteger(s.vcpu) || s.vcpu < 1 || s.vcpu > 1024) throw bad('vcpu', s.vcpu, 'is not 1..1024');
  if (!Number.isInteger(s.memMiB) || s.memMiB < 16 || s.memMiB > 16 * 2 ** 20)
    throw bad('memMiB', s.memMiB, 'is not a memory size in MiB');
  for (const [what, path] of [
    ['dir', s.dir],
    ['kernel', s.kernel],
    ['initramfs', s.initramfs],
    ['base disk', s.baseDisk],
  ] as const) {
    if (path === undefined && what === 'initramfs') continue;
    if (typeof path !== 'string' || path === '' || hasControlOrComma(path)) {
      throw bad(what, path, 'is not a path without commas or control characters');
    }
  }
  if (typeof s.cmdline !== 'string' || s.cmdline.length > 8192 || hasControlOrComma(s.cmdline, false)) {
    throw bad('kernel command line', s.cmdline, 'is not one line of at most 8192 characters');
  }
  if (!NAME_RE.test(String(s.agentChannel))) throw bad('agent channel', s.agentChannel, 'is not a name');
  const net: DriverNetwork = s.network;
  if (!MAC_RE.test(String(net.mac))) throw bad('MAC', net.mac, 'is not a MAC address');
  if (net.mode === 'user') {
    if (!Array.isArray(net.forwards)) throw bad('forwards', net.forwards, 'is not a list');
    for (const f of net.forwards) {
      if (!isPort(f.guest)) throw bad('guest port', f.guest, 'is not an integer 1..65535');
      if (!isPort(f.host)) throw bad('host port', f.host, 'is not an integer 1..65535');
    }
  } else if (net.mode === 'tap') {
    if (!IFNAME_RE.test(String(net.tap))) throw bad('TAP', net.tap, 'is not an interface name');
    if (net.netns !== undefined && !NAME_RE.test(String(net.netns))) throw bad('netns', net.netns, 'is not a name');
  } else {
    throw bad('network mode', (net as { mode: unknown }).mode, "is not 'user' or 'tap'");
  }
}

export interface QemuArgvOptions {
  incoming: boolean;
  machine?: 'pc' | 'q35' | 'microvm' | undefined;
  accel?: 'kvm' | 'tcg' | 'none' | undefined;
  /** `-sandbox` (default on). */
  sandbox?: boolean | undefined;
  /** Drop to this uid/gid once set up (`-runas`). */
  runAs?: { uid: number; gid: number } | undefined;
  /** Open the disk (fds 3 rw, 4 ro) and data disk (5, 6) from fd sets 1 and 2 instead of by path. */
  diskFds?: boolean | undefined;
}

/**
 * QEMU's argv for one VM, from a validated spec only (`validateSpec` first: VM_BAD_ARGUMENT for any
 * value that could add options). Pure.
 *
 * @example
 * qemuArgv(vm, { incoming: false }) // ['-name', 'guest=vm-1,debug-threads=off', …, '-sandbox', QEMU_SANDBOX, …]
 */
export function qemuArgv(vm: DriverVm, o: QemuArgvOptions): string[] {
  validateSpec(vm.spec);
  const s = vm.spec;
  const p = {
    disk: resolve(vm.paths.disk),
    qmp: resolve(vm.paths.qmp),
    qga: resolve(vm.paths.qga),
    serial: resolve(vm.paths.serial),
    pidfile: resolve(vm.paths.pidfile),
    data: vm.paths.data ? resolve(vm.paths.data) : undefined,
  };
  for (const [what, path] of Object.entries(p)) {
    if (path !== undefined && hasControlOrComma(path))
      throw badArg(s.id, what, path, 'has a comma or control character');
  }
  const machine = o.machine ?? 'pc';
  const bus = machine === 'microvm' ? 'device' : 'pci';
  const accel = o.accel === 'kvm' ? 'kvm' : 'tcg';
  const a: string[] = [
    '-name',
    `guest=${s.id},debug-threads=off`,
    '-accel',
    // TCG's translation cache defaults to 1 GiB and grows with every new piece of guest code run: a
    // busy guest then outgrows the VM's memory cgroup and is OOM-killed. Bound it (the cgroup counts it).
    accel === 'tcg' ? `tcg,tb-size=${TCG_TB_MIB}` : accel,
    '-M',
    machine,
    '-m',
    String(s.memMiB),
    '-smp',
    String(s.vcpu),
    '-nodefaults',
    '-nographic',
    '-no-user-config',
  ];
  if (accel === 'kvm') a.push('-cpu', 'host');
  if (o.runAs) {
    for (const n of [o.runAs.uid, o.runAs.gid]) {
      if (!Number.isInteger(n) || n < 1 || n > 4_294_967_294)
        throw badArg(s.id, 'runAs id', n, 'is not a non-root uid/gid');
    }
    a.push('-runas', `${o.runAs.uid}:${o.runAs.gid}`);
  }
  if (o.sandbox !== false) a.push('-sandbox', o.runAs ? QEMU_SANDBOX_RUNAS : QEMU_SANDBOX);
  a.push('-chardev', `file,id=ser0,path=${p.serial},append=on`, '-serial', 'chardev:ser0');
  a.push('-kernel', resolve(s.kernel));
  if (s.initramfs) a.push('-initrd', resolve(s.initramfs));
  // microvm under TCG: skip PIT calibration, which hangs ~1 boot in 4 (PLATFORM.md §3).
  const khz = machine === 'microvm' && accel === 'tcg' ? hostTscKhz() : undefined;
  a.push('-append', khz ? `${s.cmdline} tsc_early_khz=${khz}` : s.cmdline);
  let disk = p.disk;
  let data = p.data;
  // fdset disks: QEMU's image locks sit on the open files of the set, which stay open for the VM's
  // life, so the read-only one's lock would refuse the write lock when the disk is activated again
  // (`cont` after a snapshot). The driver itself never runs two QEMUs on one overlay.
  let lock = '';
  if (o.diskFds) {
    lock = ',file.locking=off';
    a.push('-add-fd', 'fd=3,set=1', '-add-fd', 'fd=4,set=1');
    disk = '/dev/fdset/1';
    if (data) {
      a.push('-add-fd', 'fd=5,set=2', '-add-fd', 'fd=6,set=2');
      data = '/dev/fdset/2';
    }
  }
  a.push(
    '-drive',
    `file=${disk},if=none,id=d0,format=qcow2,discard=unmap${lock}`,
    '-device',
    `virtio-blk-${bus},drive=d0`,
  );
  // The data disk comes second (so the root stays /dev/vda); the guest finds it by its serial.
  if (data) {
    a.push(
      '-drive',
      `file=${data},if=none,id=d1,format=qcow2,discard=unmap${lock}`,
      '-device',
      `virtio-blk-${bus},drive=d1,serial=form-data`,
    );
  }
  if (s.network.mode === 'user') {
    const fwd = s.network.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`).join('');
    a.push('-netdev', `user,id=n0${s.network.restrict ? ',restrict=on' : ''}${fwd}`);
  } else {
    a.push('-netdev', `tap,id=n0,ifname=${s.network.tap},script=no,downscript=no`);
  }
  a.push('-device', `virtio-net-${bus},netdev=n0,mac=${s.network.mac}`);
  a.push(...vfioArgs(s.gpus, machine, s.id));
  // Entropy from the host: without it the guest's crng is not ready until ~4 s into a TCG boot, and
  // first-boot key generation (ssh host key, the attestation key) blocks on it.
  a.push('-object', 'rng-random,id=rng0,filename=/dev/urandom', '-device', `virtio-rng-${bus},rng=rng0`);
  // A VM generation ID, new at every QEMU start (guid=auto): a guest kernel with the vmgenid driver reseeds
  // its RNG when a restored snapshot sees a new one (boot snapshots also reseed from the guest's init).
  if (machine !== 'microvm') a.push('-device', 'vmgenid,guid=auto');
  a.push(
    '-device',
    `virtio-serial-${bus}`,
    '-chardev',
    `socket,id=qga0,path=${p.qga},server=on,wait=off`,
    '-device',
    `virtserialport,chardev=qga0,name=${s.agentChannel}`,
  );
  a.push('-qmp', `unix:${p.qmp},server=on,wait=off`, '-pidfile', p.pidfile);
  if (o.incoming) a.push('-incoming', 'defer');
  return a;
}

/** Host CPU frequency in kHz from /proc/cpuinfo (TCG's rdtsc follows the host TSC). */
function hostTscKhz(): number | undefined {
  const m = /cpu MHz\s*:\s*([\d.]+)/.exec(safeRead('/proc/cpuinfo'));
  return m ? Math.floor(Number(m[1]) * 1000) : undefined;
}
