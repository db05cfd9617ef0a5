import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { access, chown, mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { Container } from './container-backend.ts';
import { ownedDir } from './dirs.ts';
import type { ImageRunConfig } from './docker-archive.ts';

const run = promisify(execFile);

/** CPU, memory and process-count limits of one runtime container (cgroup v1, cgroupfs driver). */
export interface ContainerLimits {
  memoryMiB: number;
  /** CPU share as cores (0.5 = half a core). */
  cpus: number;
  pids: number;
}

export interface RuncContainerOptions {
  id: string;
  /** runc state directory (`runc --root`). */
  runcRoot: string;
  /** Where this container's bundle (config.json, socket dir, workspace, log) lives. */
  bundleDir: string;
  /** Unpacked image root filesystem; mounted read-only, shared by every container of the image. */
  rootfs: string;
  image: ImageRunConfig;
  limits: ContainerLimits;
  env?: string[];
  logger: Logger;
  runc?: string;
  /** User the runtime server runs as inside the container (default 65534, nobody): not root, even there. */
  uid?: number;
  /**
   * User namespace: container ids 0…size-1 are host ids hostId…hostId+size-1, so even the container's
   * root is an unprivileged host user. Absent = no user namespace.
   */
  userns?: UserNamespace;
}

export interface UserNamespace {
  hostId: number;
  size: number;
}

const NOBODY = 65534;

/** Syscalls a runtime container never needs and that widen the kernel attack surface: EPERM. */
export const DENIED_SYSCALLS = [
  // new namespaces and ways around the container's own (unshare(CLONE_NEWUSER) is the usual first step)
  'unshare',
  'setns',
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'chroot',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
  // kernel keyring, modules, kexec, BPF, perf, userfaultfd, io_uring: frequent exploit vectors
  'keyctl',
  'add_key',
  'request_key',
  'init_module',
  'finit_module',
  'delete_module',
  'create_module',
  'kexec_load',
  'kexec_file_load',
  'bpf',
  'perf_event_open',
  'userfaultfd',
  'io_uring_setup',
  'io_uring_enter',
  'io_uring_register',
  // other processes' memory, file handles that bypass path checks
  'ptrace',
  'process_vm_readv',
  'process_vm_writev',
  'kcmp',
  'open_by_handle_at',
  'name_to_handle_at',
  // host-wide state
  'reboot',
  'swapon',
  'swapoff',
  'syslog',
  'acct',
  'quotactl',
  'quotactl_fd',
  'settimeofday',
  'clock_settime',
  'clock_adjtime',
  'adjtimex',
  'sethostname',
  'setdomainname',
  'iopl',
  'ioperm',
  'lookup_dcookie',
  'nfsservctl',
  'uselib',
  'vhangup',
  'fanotify_init',
  'get_kernel_syms',
  'query_module',
  '_sysctl',
  'sysfs',
  'ustat',
  'vm86',
  'vm86old',
];

/** CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME. */
const CLONE_NEW_FLAGS = [
  0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080,
];

/**
 * The default seccomp profile: allow, except `DENIED_SYSCALLS` (EPERM), `clone` with any
 * new-namespace flag (EPERM) and `clone3` (ENOSYS, so libc falls back to `clone`, whose flags a
 * filter can see).
 */
export function seccompProfile(): Record<string, unknown> {
  const EPERM = 1;
  const ENOSYS = 38;
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
    syscalls: [
      { names: DENIED_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // one rule per flag (a rule's conditions are ANDed): flags are clone's first argument here
      ...CLONE_NEW_FLAGS.map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
    ],
  };
}

/** Give a directory tree to the container's user (the only places it may write). */
export async function chownTree(dir: string, uid: number): Promise<void> {
  await chown(dir, uid, uid);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const p = join(e.parentPath, e.name);
    if (!e.isSymbolicLink()) await chown(p, uid, uid);
  }
}

/** State letter and start time of a host process, from /proc/<pid>/stat (undefined when gone). */
function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '?', startTime: rest[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** Is runc usable here (binary present and we are root)? Returns the reason when not. */
export async function runcUnavailable(runc = 'runc'): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'runtime containers need root (runc with cgroups and namespaces)';
  try {
    await run(runc, ['--version']);
  } catch {
    return `${runc} is not installed (apt-get install runc)`;
  }
  return undefined;
}

/** The OCI runtime spec for a runtime container: read-only image root, own namespaces (an empty network namespace: loopback only), limits, and two binds: the API socket directory and the workspace. */
export function ociSpec(o: RuncContainerOptions, socketDir: string, workspaceDir: string): Record<string, unknown> {
  const args = [...(o.image.Entrypoint ?? []), ...(o.image.Cmd ?? [])];
  if (args.length === 0) throw new FormError('RUNTIME_IMAGE_INVALID', 'Cannot run image: it has no Entrypoint or Cmd');
  // one capability, and only inside the container's empty network namespace
  const caps = ['CAP_NET_BIND_SERVICE'];
  const namespaces: Array<{ type: string }> = [
    { type: 'pid' },
    { type: 'network' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    { type: 'cgroup' },
  ];
  const idMaps = o.userns ? [{ containerID: 0, hostID: o.userns.hostId, size: o.userns.size }] : undefined;
  if (o.userns) namespaces.push({ type: 'user' });
  const periodUs = 100_000;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: o.uid ?? NOBODY, gid: o.uid ?? NOBODY },
      args,
      env: [
        ...(o.image.Env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']),
        'FORM_RT_SOCKET=/run/formrt/api.sock',
        'FORM_RT_WORKSPACE=/workspace',
        ...(o.env ?? []),
      ],
      cwd: o.image.WorkingDir || '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: o.rootfs, readonly: true },
    hostname: 'formrt',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] },
      {
        destination: '/run/formrt',
        type: 'bind',
        source: socketDir,
        options: ['rbind', 'rw', 'nosuid', 'nodev', 'noexec'],
      },
      {
        destination: '/workspace',
        type: 'bind',
        source: workspaceDir,
        options: ['rbind', 'rw', 'nosuid', 'nodev', 'noexec'],
      },
    ],
    linux: {
      cgroupsPath: `/formation-runtime/${o.id}`,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: o.limits.memoryMiB * 1024 * 1024, swap: o.limits.memoryMiB * 1024 * 1024 },
        cpu: { quota: Math.max(1000, Math.round(o.limits.cpus * periodUs)), period: periodUs },
        pids: { limit: o.limits.pids },
      },
      namespaces,
      ...(idMaps ? { uidMappings: idMaps, gidMappings: idMaps } : {}),
      seccomp: seccompProfile(),
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
        '/proc/interrupts',
        '/proc/timer_stats',
      ],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/**
 * One runc container running a runtime server that listens on a unix socket in a directory
 * bind-mounted from the host: the manager's only channel into the container.
 */
export class RuncContainer implements Container {
  readonly id: string;
  readonly socketPath: string;
  readonly workspaceDir: string;
  private readonly o: RuncContainerOptions;
  private readonly runc: string;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private readonly log: Logger;
  private hostPid: number | undefined;
  /** Start time of hostPid (guards against PID reuse). */
  private startTime: string | undefined;

  constructor(o: RuncContainerOptions) {
    this.o = o;
    this.id = o.id;
    this.runc = o.runc ?? 'runc';
    this.socketPath = join(o.bundleDir, 'run', 'api.sock');
    this.workspaceDir = join(o.bundleDir, 'workspace');
    this.log = o.logger.child({ component: 'runtime-container', container: o.id });
  }

  /** Create the bundle and start the container; resolves when the runtime server answers /vmm/health. */
  async start(timeoutMs = 15_000): Promise<void> {
    const { bundleDir } = this.o;
    await mkdir(bundleDir, { recursive: true, mode: 0o700 });
    await mkdir(join(bundleDir, 'run'), { recursive: true, mode: 0o700 });
    await mkdir(this.workspaceDir, { recursive: true, mode: 0o700 });
    await chownTree(join(bundleDir, 'run'), this.uid);
    await chownTree(this.workspaceDir, this.uid);
    await ownedDir(this.o.runcRoot);
    await writeFile(
      join(bundleDir, 'config.json'),
      JSON.stringify(ociSpec(this.o, join(bundleDir, 'run'), this.workspaceDir)),
    );
    const log = await open(join(bundleDir, 'container.log'), 'a');
    try {
      const child = spawn(
        this.runc,
        ['--root', this.o.runcRoot, 'run', '-d', '--pid-file', join(bundleDir, 'pid'), '--bundle', bundleDir, this.id],
        { stdio: ['ignore', log.fd, log.fd] },
      );
      const code = await new Promise<number>((res) => child.on('exit', (c) => res(c ?? 1)));
      if (code !== 0) {
        const tail = (await readFile(join(bundleDir, 'container.log'), 'utf8').catch(() => '')).slice(-600);
        throw new FormError(
          'RUNTIME_CONTAINER',
          `Cannot start runtime container ${this.id}: runc exited ${code}\n${tail}`,
        );
      }
    } finally {
      await log.close();
    }
    this.hostPid = Number((await readFile(join(bundleDir, 'pid'), 'utf8')).trim());
    this.startTime = procStat(this.hostPid)?.startTime;
    const t0 = Date.now();
    for (;;) {
      if (
        await access(`${this.socketPath}.ready`).then(
          () => true,
          () => false,
        )
      ) {
        try {
          await this.call('/vmm/health', {}, 2000);
          this.log.debug({ ms: Date.now() - t0, hostPid: this.hostPid }, 'container ready');
          return;
        } catch {
          // not yet
        }
      }
      if (!this.alive()) {
        const tail = (await readFile(join(bundleDir, 'container.log'), 'utf8').catch(() => '')).slice(-600);
        throw new FormError(
          'RUNTIME_CONTAINER',
          `Cannot start runtime container ${this.id}: its process exited\n${tail}`,
        );
      }
      if (Date.now() - t0 > timeoutMs)
        throw new FormError(
          'RUNTIME_CONTAINER',
          `Cannot start runtime container ${this.id}: no answer on its socket within ${timeoutMs} ms`,
        );
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Host user id the container's process runs as (owner of its socket directory and workspace). */
  get uid(): number {
    return (this.o.uid ?? NOBODY) + (this.o.userns?.hostId ?? 0);
  }

  /** Host PID of the container's init (the runtime server). */
  get pid(): number | undefined {
    return this.hostPid;
  }

  /** Whether the container's process still runs (a container killed from outside does not; a zombie does not). */
  alive(): boolean {
    if (!this.hostPid) return false;
    const stat = procStat(this.hostPid);
    return stat !== undefined && stat.startTime === this.startTime && stat.state !== 'Z' && stat.state !== 'X';
  }

  /** POST a JSON body to the runtime server; resolves with status and parsed body. */
  call(path: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: Record<string, unknown> }> {
    const text = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          path,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            try {
              resolve({
                status: res.statusCode ?? 0,
                body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
              });
            } catch (err) {
              reject(err);
            }
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      );
      req.on('error', reject);
      req.end(text);
    });
  }

  /** Kill and delete the container and its bundle (idempotent). */
  async destroy(keepBundle = false): Promise<void> {
    this.agent.destroy();
    await run(this.runc, ['--root', this.o.runcRoot, 'kill', this.id, 'KILL']).catch(() => undefined);
    for (let i = 0; i < 50; i++) {
      try {
        await run(this.runc, ['--root', this.o.runcRoot, 'delete', '-f', this.id]);
        break;
      } catch (err) {
        if (/does not exist|not exist/.test(String((err as { stderr?: string }).stderr ?? ''))) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    if (!keepBundle) await rm(this.o.bundleDir, { recursive: true, force: true });
  }
}
