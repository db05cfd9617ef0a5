import { join } from 'node:path';
import { formHome } from '@formation/interface';
import { loadConfig } from '@formation/service';
import { type Static, Type } from '@sinclair/typebox';

/** The VMM's configuration (file + VMM_* env + flags, validated at start). */
export const VmmConfigSchema = Type.Object({
  apiPort: Type.Integer({ minimum: 0, maximum: 65535, default: 3002 }),
  apiHost: Type.String({ default: '127.0.0.1' }),
  logLevel: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  /** form-state URL (seed 003). Recorded for the node daemon; the VMM itself keeps its own records. */
  stateUrl: Type.String({ default: 'http://127.0.0.1:3004' }),
  /** Kernel for plain disk images (default: the host's newest /boot/vmlinuz, cloud flavour). */
  kernelPath: Type.Optional(Type.String({ minLength: 1 })),
  /** Initramfs for plain disk images (default: built once from the kernel's modules). */
  initramfsPath: Type.Optional(Type.String({ minLength: 1 })),
  /** VM runtime + state directory (one subdirectory per VM). */
  vmDir: Type.String({ minLength: 1, default: '/run/form-vm' }),
  imagesDir: Type.String({ minLength: 1, default: '/var/lib/formation/vm-images' }),
  formpacksDir: Type.String({ minLength: 1, default: join(formHome(), 'formpacks') }),
  /** Cache for extracted .form archives, generated initramfs and the KVM probe. */
  cacheDir: Type.String({ minLength: 1, default: '/var/tmp/formation-vmm-cache' }),
  /** host:port list to wait for before serving (WAIT_FOR). */
  waitFor: Type.String({ default: '' }),
  accel: Type.Union([Type.Literal('auto'), Type.Literal('kvm'), Type.Literal('tcg')], { default: 'auto' }),
  /** Empty data disk (MiB, sparse qcow2) every Formpack VM gets, encrypted inside the guest; 0 = none. */
  dataDiskMiB: Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024, default: 1024 }),
  machine: Type.Union([Type.Literal('pc'), Type.Literal('q35'), Type.Literal('microvm')], { default: 'pc' }),
  sandbox: Type.Boolean({ default: true }),
  cgroupLimits: Type.Boolean({ default: true }),
  network: Type.Object(
    {
      mode: Type.Union([Type.Literal('user'), Type.Literal('tap')], { default: 'user' }),
      netns: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' })),
      createNetns: Type.Boolean({ default: false }),
      bridge: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,15}$', default: 'formbr0' }),
      cidr: Type.String({ pattern: '^\\d+\\.\\d+\\.\\d+\\.\\d+/\\d+$', default: '10.129.0.0/24' }),
    },
    { default: {} },
  ),
  /**
   * Instances reach beyond formnet (NAT out of the namespace's default route) when 'on' (tap mode).
   * 'off' keeps every instance inside formnet; a VM's own `egress: false` turns it off for that VM.
   */
  egress: Type.Union([Type.Literal('on'), Type.Literal('off')], { default: 'on' }),
  /** Guests' upstream resolvers, `ip[:port]` comma list; empty = the namespace's resolv.conf. */
  dnsUpstream: Type.String({ default: '', pattern: '^[0-9.:, ]*$' }),
  capacity: Type.Object(
    {
      vcpu: Type.Optional(Type.Integer({ minimum: 1 })),
      memMiB: Type.Optional(Type.Integer({ minimum: 64 })),
      diskGiB: Type.Optional(Type.Integer({ minimum: 1 })),
      vcpuOvercommit: Type.Number({ minimum: 1, default: 4 }),
      reserveMemMiB: Type.Integer({ minimum: 0, default: 1024 }),
    },
    { default: {} },
  ),
  /** Graceful stop window before a forced stop (ms). */
  stopTimeoutMs: Type.Integer({ minimum: 100, default: 10_000 }),
  /** Guest health check period (ms); 0 disables. */
  healthIntervalMs: Type.Integer({ minimum: 0, default: 5000 }),
  /** Default restart policy for new VMs when QEMU dies unexpectedly. */
  restartPolicy: Type.Union([Type.Literal('never'), Type.Literal('on-failure')], { default: 'never' }),
  maxRestarts: Type.Integer({ minimum: 0, default: 3 }),
  /**
   * Boot snapshots (README "Boot snapshots"): the first VM of a Formpack leaves a template of its
   * pre-identity boot; later VMs restore it. On by default; `false` turns it off.
   */
  bootSnapshots: Type.Boolean({ default: true }),
  /**
   * Disk budget of all boot templates together (MiB): over it the least recently used are deleted
   * (a template of a 512 MiB guest takes ~110 MiB, so the default keeps ~18).
   */
  bootSnapshotMaxMiB: Type.Integer({ minimum: 128, maximum: 16 * 1024 * 1024, default: 2048 }),
  /**
   * Standby VMs: for this many of the request shapes used last, one VM restored from its Formpack's
   * template ahead of time and left paused (no identity), taken by the next VM of that shape (it is only
   * resumed). Each holds its VM's memory and counts in the capacity until taken; 0 turns them off.
   */
  bootStandby: Type.Integer({ minimum: 0, maximum: 16, default: 1 }),
  /** Where boot templates are kept (default `<vmDir>/../templates`). */
  templatesDir: Type.Optional(Type.String({ minLength: 1 })),
  /**
   * Scale to zero (tap mode): connections to a suspended VM's address are held while it resumes
   * (wake-gate.ts). On by default; needs nft in the bridge's namespace.
   */
  wakeOnConnect: Type.Boolean({ default: true }),
});

export type VmmConfig = Static<typeof VmmConfigSchema>;

/**
 * Load the VMM config: defaults < JSON file (VMM_CONFIG_PATH) < VMM_* env < flags.
 *
 * @example
 * const cfg = loadVmmConfig(process.env, { apiPort: 0 });
 */
export function loadVmmConfig(env: NodeJS.ProcessEnv = process.env, flags: Partial<VmmConfig> = {}): VmmConfig {
  return loadConfig(VmmConfigSchema, {
    file: env.VMM_CONFIG_PATH ?? '/etc/formation/vmm/default.conf',
    fileRequired: env.VMM_CONFIG_PATH !== undefined,
    env: {
      logLevel: env.VMM_LOG_LEVEL,
      apiPort: env.VMM_API_PORT,
      stateUrl: env.VMM_STATE_URL,
      kernelPath: env.VMM_KERNEL_PATH,
      vmDir: env.VMM_VM_DIR,
      imagesDir: env.VMM_IMAGES_DIR,
      waitFor: env.WAIT_FOR,
      egress: env.VMM_EGRESS ?? env.FORM_EGRESS,
      dnsUpstream: env.VMM_DNS_UPSTREAM ?? env.FORM_DNS_UPSTREAM,
      bootSnapshots: env.VMM_BOOT_SNAPSHOTS,
      bootSnapshotMaxMiB: env.VMM_BOOT_SNAPSHOT_MAX_MIB,
      bootStandby: env.VMM_BOOT_STANDBY,
      wakeOnConnect: env.VMM_WAKE_ON_CONNECT,
    },
    flags: flags as Record<string, unknown>,
  });
}
