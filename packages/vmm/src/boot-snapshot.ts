import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm, rmdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError, GUEST_READY_MARKER, type Resources } from '@formation/interface';
import type { Logger } from '@formation/service';
import { sha256File } from '@formation/service/files';
import type { DriverVm, DriverVmSpec, HypervisorDriver, SnapshotInfo } from './driver.ts';
import type { QemuIdentity } from './qemu-identity.ts';
import { planTemplateGc, qemuMismatch, readMeta, scanTemplates, type TemplateDeletion } from './template-gc.ts';

/**
 * Boot snapshots (issue 22): per Formpack and node, one template VM is booted with an instance-neutral
 * command line (`vm_wait=identity`) to the guest init's wait point — before any host key, attestation
 * key, hostname, address, data disk or secret exists — and its memory + device state is saved. Later VMs
 * of that Formpack restore it into their own overlay and are then released with their own identity
 * over the guest agent (files under /run/form). Whatever does not fit is cold-booted, with the reason.
 */

/** The cmdline word that makes the guest init wait for its identity (packages/guest/files/form-init). */
export const WAIT_WORD = 'vm_wait=identity';
/** Console mark of the guest init at the wait point (ready: GUEST_READY_MARKER). */
export const WAIT_MARK = 'FORM-INIT-WAIT';
/** The NIC address the template boots with; every instance sets its own after the release. */
export const TEMPLATE_MAC = '52:54:00:00:00:01';

/** The instance-neutral cmdline of a Formpack: its own, plus the wait word (no vm_ip/vm_name/…). */
export function neutralCmdline(formpackCmdline: string): string {
  const words = formpackCmdline.split(/\s+/).filter((w) => w && !w.startsWith('vm_'));
  return [...words, WAIT_WORD].join(' ');
}

/** What the guest learns at the release point. */
export interface InstanceIdentity {
  ip: string;
  gateway: string;
  dns: string;
  name: string;
  id: string;
  mac: string;
}

const IDENTITY_RULES: Record<keyof InstanceIdentity, RegExp> = {
  ip: /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/,
  gateway: /^(none|\d{1,3}(\.\d{1,3}){3})$/,
  dns: /^(none|\d{1,3}(\.\d{1,3}){3})$/,
  name: /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
  id: /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  mac: /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/,
};

/**
 * The files the host writes into a waiting guest, in order: host entropy (hex, mixed in and the RNG
 * reseeded before anything else runs), the identity (`vm_*` words the init reads after its cmdline),
 * then the release mark. The guest splits the identity on whitespace, so every value is checked against
 * a strict pattern first: a space, newline or glob in a name would add words of the caller's choosing.
 * Throws VM_BAD_ARGUMENT. Pure but for `seedHex`/`nowSec` given by the caller.
 *
 * @example
 * identityFiles({ ip: '10.129.0.2/24', gateway: '10.129.0.1', dns: '10.129.0.1', name: 'web-1', id: 'vm-ab', mac: '52:54:00:12:34:56' }, 'ab…', 1767225600)
 */
export function identityFiles(
  ident: InstanceIdentity,
  seedHex: string,
  nowSec: number,
): Array<{ path: string; data: string }> {
  for (const [k, re] of Object.entries(IDENTITY_RULES) as Array<[keyof InstanceIdentity, RegExp]>) {
    const v = ident[k];
    if (typeof v !== 'string' || !re.test(v)) {
      throw new FormError(
        'VM_BAD_ARGUMENT',
        `Cannot release VM ${JSON.stringify(ident.id)}: its ${k} ${JSON.stringify(v)} does not match ${re}`,
        { hint: 'Identity values go to the guest init as words; only addresses, DNS labels and ids pass.' },
      );
    }
  }
  if (!/^[0-9a-f]{64,}$/.test(seedHex)) {
    throw new FormError('VM_BAD_ARGUMENT', 'Cannot release a VM: the entropy seed is not at least 32 bytes of hex');
  }
  if (!Number.isInteger(nowSec) || nowSec < 0) {
    throw new FormError('VM_BAD_ARGUMENT', `Cannot release a VM: time ${nowSec} is not whole seconds`);
  }
  const words = [
    `vm_ip=${ident.ip}`,
    `vm_gw=${ident.gateway}`,
    `vm_dns=${ident.dns}`,
    `vm_name=${ident.name}`,
    `vm_id=${ident.id}`,
    `vm_mac=${ident.mac}`,
    `vm_time=${nowSec}`,
  ];
  return [
    { path: '/run/form/seed', data: `${seedHex}\n` },
    { path: '/run/form/identity', data: `${words.join('\n')}\n` },
    { path: '/run/form/release', data: '' },
  ];
}

/** What a template boot's console says so far: at the wait point, booted without one (an older guest), or neither yet. */
export function classifyTemplateBoot(consoleText: string): 'waiting' | 'no-wait-point' | 'pending' {
  if (consoleText.includes(WAIT_MARK)) return 'waiting';
  if (consoleText.includes(GUEST_READY_MARKER)) return 'no-wait-point';
  return 'pending';
}

/** What a VM needs from a template (everything its saved state depends on, besides QEMU). */
export interface TemplateWant {
  formpackId: string;
  kernelSha256: string;
  initramfsSha256: string | null;
  diskSha256: string | null;
  kernel: string;
  initramfs?: string | undefined;
  baseDisk: string;
  baseDiskFormat: DriverVmSpec['baseDiskFormat'];
  diskGiB: number;
  cmdline: string;
  memMiB: number;
  vcpu: number;
  dataDiskMiB: number;
  agentChannel: string;
  /**
   * The network backend: QEMU saves user-mode networking (slirp) with the VM, so a template restores
   * only into the mode it was made in; a tap template boots on its own TAP, attached to nothing.
   */
  netMode: 'user' | 'tap';
  netns?: string | undefined;
}

/** template.json: what a saved template was made from and of. */
export interface TemplateMeta {
  v: 1;
  want: TemplateWant;
  qemu: QemuIdentity;
  /** sha256 and size of each state file. */
  files: Record<string, { sha256: string; bytes: number }>;
  createdAt: string;
  /** Template boot: launch to wait point (ms); saving its state (ms). */
  bootMs: number;
  saveMs: number;
}

/** The directory name of templates made under one QEMU identity. */
export function qemuFingerprint(q: QemuIdentity): string {
  const keys = Object.keys(q).sort() as Array<keyof QemuIdentity>;
  return createHash('sha256')
    .update(JSON.stringify(keys.map((k) => [k, q[k]])))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Why a template does not fit, or undefined when it does. `rebuild`: a new template for what is wanted
 * should replace it (the Formpack or QEMU changed); a VM of another size just cold-boots. Pure.
 */
export function templateMismatch(
  meta: TemplateMeta,
  want: TemplateWant,
  qemu: QemuIdentity,
): { reason: string; rebuild: boolean } | undefined {
  const q = qemuMismatch(meta.qemu, qemu);
  if (q) return { reason: q, rebuild: true };
  const w = meta.want;
  for (const k of ['formpackId', 'kernelSha256', 'initramfsSha256', 'diskSha256', 'baseDisk', 'cmdline'] as const) {
    if (w[k] !== want[k]) return { reason: `the Formpack changed since the template was made (${k})`, rebuild: true };
  }
  for (const k of ['memMiB', 'vcpu', 'dataDiskMiB', 'agentChannel', 'baseDiskFormat', 'netMode', 'netns'] as const) {
    if (w[k] !== want[k]) {
      return { reason: `template has ${k} ${w[k]}, this VM wants ${want[k]}`, rebuild: false };
    }
  }
  return undefined;
}

/** The driver operations templates need (the QEMU driver has them; others simply have no boot snapshots). */
export interface TemplateDriver extends HypervisorDriver {
  templateIdentity(): Promise<QemuIdentity>;
  restore(vm: DriverVm, dir: string, opts?: { memorySha256?: string | undefined }): Promise<void>;
  writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>, timeoutMs?: number): Promise<void>;
}

export function isTemplateDriver(d: HypervisorDriver): d is TemplateDriver {
  const t = d as Partial<TemplateDriver>;
  return typeof t.templateIdentity === 'function' && typeof t.writeGuestFiles === 'function';
}

export type TemplateFit =
  | { ok: true; dir: string; meta: TemplateMeta }
  | { ok: false; reason: string; rebuild: boolean };

export interface BootTemplatesOptions {
  driver: TemplateDriver;
  /** Templates root (`<vmDir>/../templates` by default). */
  root: string;
  /** Where the template VM's runtime dir goes (short paths: unix sockets). */
  vmDir: string;
  logger: Logger;
  bootTimeoutMs?: number | undefined;
  /**
   * How long a template build waits before it boots its VM (default 10 s). Builds are asked for once
   * the Formpack's first VM is ready, when its entrypoint is only starting: a template boot then took
   * the CPU the instance needed (TCG, 2 cores: that instance's ready → first HTTP 200 8.3 s instead of
   * 3.5 s). A VM created meanwhile cold-boots, as when no template exists.
   */
  buildDelayMs?: number | undefined;
  /** Where the node's Formpacks are (`<id>/`): a template whose Formpack is gone is deleted. */
  formpacksDir?: string | undefined;
  /** Disk budget of all templates (MiB, default 2048); over it the least recently used go. */
  maxMiB?: number | undefined;
  /** How often the GC also runs on its own (ms, default 10 min; 0: only at start and after builds). */
  gcEveryMs?: number | undefined;
  /**
   * Why a template VM of these resources would not fit now (the manager's capacity check), or
   * undefined when it fits. A build that does not fit waits (the reason logged) and tries again.
   */
  fits?: ((r: Resources) => string | undefined) | undefined;
  /**
   * Why the node is not quiet enough for a template boot (a VM booting, or one that booted in the last
   * seconds), or undefined. A build waits for a quiet node: on 2 cores a TCG template boot next to a
   * booting instance slows both down.
   */
  quiet?: (() => string | undefined) | undefined;
  /** How often a waiting build looks again (ms, default 2 s), and how long it waits at most (default 10 min). */
  retryMs?: number | undefined;
  maxWaitMs?: number | undefined;
}

const STATE_FILES = ['memory.mig', 'disk.qcow2', 'data.qcow2'];
/** In a template VM's runtime dir: its DriverVm, for reapOrphans. */
const ORPHAN_FILE = 'template-vm.json';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The node's templates: `<root>/<formpack id>/<qemu fingerprint>/{memory.mig,disk.qcow2,data.qcow2,template.json}`
 * (directories 0700, files 0600, the VMM's user only), plus `<root>/<formpack id>/capability.json`
 * (whether its guest has the wait point). Builds run one at a time.
 */
export class BootTemplates {
  private readonly log: Logger;
  private readonly builds = new Map<string, Promise<TemplateMeta | undefined>>();
  private readonly failed = new Map<string, string>();
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private building: DriverVm | undefined;
  /** What the template VM being booted holds (counted in the manager's capacity().used). */
  private reserved: Resources | undefined;
  /** Template directories being restored from or built: the GC leaves them alone. */
  private readonly pins = new Map<string, number>();
  private gcTimer: NodeJS.Timeout | undefined;
  private gcRun: Promise<TemplateDeletion[]> | undefined;
  /** Why the running build was stopped to make room (yieldRoom), if it was. */
  private yielded: string | undefined;
  private holdUntil = 0;
  /** The wait before a build (ended early by close). */
  private pause: { timer: NodeJS.Timeout; end: () => void } | undefined;

  private readonly o: BootTemplatesOptions;

  constructor(o: BootTemplatesOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'boot-templates' });
    const every = o.gcEveryMs ?? 600_000;
    if (every > 0) {
      this.gcTimer = setInterval(() => void this.gc().catch(() => undefined), every);
      this.gcTimer.unref();
    }
  }

  /**
   * Remove template VMs a previous VMM left running (it was killed mid-build): their process, by the
   * pid its QEMU wrote, and their runtime dir. Call at start, before any build. Returns how many.
   */
  async reapOrphans(): Promise<number> {
    let n = 0;
    for (const name of await readdir(this.o.vmDir).catch(() => [] as string[])) {
      if (!/^tpl-[0-9a-f]{12}$/.test(name) || this.building?.spec.id === name) continue;
      const runDir = join(this.o.vmDir, name);
      try {
        const vm = JSON.parse(readFileSync(join(runDir, ORPHAN_FILE), 'utf8')) as DriverVm;
        const pid = Number.parseInt(readFileSync(vm.paths.pidfile, 'utf8'), 10);
        if (pid > 0) vm.pid = pid;
        await this.o.driver.destroy(vm);
      } catch (err) {
        this.log.warn(
          { dir: runDir, err: (err as Error).message },
          'template VM of a previous run: no process to stop',
        );
      }
      await rm(runDir, { recursive: true, force: true });
      this.log.info({ dir: runDir }, 'template VM of a previous run removed');
      n++;
    }
    return n;
  }

  /** Resources of the template VM being booted now (none when no build runs). */
  get inUse(): Resources | undefined {
    return this.reserved;
  }

  private pin(dir: string): void {
    this.pins.set(dir, (this.pins.get(dir) ?? 0) + 1);
  }

  private unpin(dir: string): void {
    const n = (this.pins.get(dir) ?? 1) - 1;
    if (n > 0) this.pins.set(dir, n);
    else this.pins.delete(dir);
  }

  /**
   * Delete what planTemplateGc says (template-gc.ts): templates of Formpacks no longer on the node,
   * unreadable or unfinished ones, those no VM of this QEMU can restore, then the least recently used
   * over the budget. Never one being restored from or built. One run at a time; returns what went.
   */
  gc(): Promise<TemplateDeletion[]> {
    this.gcRun ??= this.collect().finally(() => {
      this.gcRun = undefined;
    });
    return this.gcRun;
  }

  private async collect(): Promise<TemplateDeletion[]> {
    if (this.closed) return [];
    const qemu = await this.o.driver.templateIdentity();
    const entries = await scanTemplates(this.o.root);
    const fpDir = this.o.formpacksDir;
    const plan = planTemplateGc({
      entries,
      formpackPresent: (id) => fpDir === undefined || existsSync(join(fpDir, id)),
      qemu,
      budgetBytes: (this.o.maxMiB ?? 2048) * 2 ** 20,
      inUse: new Set(this.pins.keys()),
      nowMs: Date.now(),
    });
    const done: TemplateDeletion[] = [];
    for (const d of plan) {
      // Looked at again right before: a restore that began since the plan keeps its template.
      if (this.pins.has(d.dir)) continue;
      await rm(d.dir, { recursive: true, force: true });
      done.push(d);
      this.log.info(
        { formpack: d.formpackId, dir: d.dir, mib: Math.round(d.bytes / 2 ** 20), reason: d.reason },
        'boot template deleted',
      );
      // A Formpack gone from the node leaves nothing behind (capability.json included).
      if (fpDir !== undefined && !existsSync(join(fpDir, d.formpackId))) {
        const rest = await readdir(join(this.o.root, d.formpackId)).catch(() => [] as string[]);
        if (rest.every((f) => f === 'capability.json')) {
          await rm(join(this.o.root, d.formpackId, 'capability.json'), { force: true });
          await rmdir(join(this.o.root, d.formpackId)).catch(() => undefined);
        }
      }
    }
    return done;
  }

  get root(): string {
    return this.o.root;
  }

  private fpDir(formpackId: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(formpackId)) {
      throw new FormError(
        'VM_BAD_ARGUMENT',
        `Cannot use boot templates of Formpack ${JSON.stringify(formpackId)}: not an id`,
      );
    }
    return join(this.o.root, formpackId);
  }

  /** Whether this Formpack's guest has the wait point, as learned from its template boot. */
  capability(formpackId: string): { capable: boolean | undefined; reason?: string | undefined } {
    try {
      const c = JSON.parse(readFileSync(join(this.fpDir(formpackId), 'capability.json'), 'utf8')) as {
        capable: boolean;
        reason?: string;
      };
      return { capable: c.capable === true, reason: c.reason };
    } catch {
      return { capable: undefined };
    }
  }

  async dirFor(formpackId: string): Promise<string> {
    return join(this.fpDir(formpackId), qemuFingerprint(await this.o.driver.templateIdentity()));
  }

  /**
   * The template for `want` when one fits, else why not (never throws for a bad template). A fitting
   * template stays pinned (the GC leaves it) until `restore` from it ends.
   */
  async find(want: TemplateWant): Promise<TemplateFit> {
    const qemu = await this.o.driver.templateIdentity();
    const dir = join(this.fpDir(want.formpackId), qemuFingerprint(qemu));
    this.pin(dir);
    const fit = await this.lookup(want, qemu, dir).catch((err: unknown) => {
      this.unpin(dir);
      throw err;
    });
    if (!fit.ok) this.unpin(dir);
    return fit;
  }

  private async lookup(want: TemplateWant, qemu: QemuIdentity, dir: string): Promise<TemplateFit> {
    if (!existsSync(dir)) {
      // Say why: a template of another QEMU, or none at all.
      for (const other of await readdir(this.fpDir(want.formpackId)).catch(() => [] as string[])) {
        const meta = await readMeta(join(this.fpDir(want.formpackId), other)).catch(() => undefined);
        const m = meta && templateMismatch(meta, want, qemu);
        if (m) return { ok: false, reason: m.reason, rebuild: true };
      }
      return { ok: false, reason: 'no template of this Formpack for this QEMU yet', rebuild: true };
    }
    let meta: TemplateMeta;
    try {
      const st = await lstat(dir);
      if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? st.uid) || (st.mode & 0o077) !== 0) {
        return { ok: false, reason: `template ${dir} is not a private directory of the VMM's user`, rebuild: true };
      }
      meta = await readMeta(dir);
    } catch (err) {
      return { ok: false, reason: `template ${dir} is unreadable: ${(err as Error).message}`, rebuild: true };
    }
    const m = templateMismatch(meta, want, qemu);
    if (m) return { ok: false, ...m };
    for (const [name, f] of Object.entries(meta.files)) {
      const p = join(dir, name);
      const st = await stat(p).catch(() => undefined);
      if (!st) return { ok: false, reason: `template file ${name} is missing`, rebuild: true };
      if (st.size !== f.bytes) {
        return { ok: false, reason: `template file ${name} has ${st.size} bytes, ${f.bytes} expected`, rebuild: true };
      }
      // memory.mig is checked while it streams into QEMU (restore with memorySha256); the rest now.
      if (name !== 'memory.mig' && (await sha256File(p)) !== f.sha256) {
        return { ok: false, reason: `template file ${name} is damaged (sha256 differs)`, rebuild: true };
      }
    }
    if (!meta.files['memory.mig'] || !meta.files['disk.qcow2']) {
      return { ok: false, reason: 'template lacks its memory or disk state', rebuild: true };
    }
    return { ok: true, dir, meta };
  }

  /** Restore a fitting template into `vm` (its memory verified before the VM runs). */
  async restore(vm: DriverVm, fit: Extract<TemplateFit, { ok: true }>): Promise<void> {
    const mem = fit.meta.files['memory.mig'];
    try {
      // Its last use, for the GC's least-recently-used order.
      const now = new Date();
      await utimes(join(fit.dir, 'template.json'), now, now).catch(() => undefined);
      await this.o.driver.restore(vm, fit.dir, { memorySha256: mem?.sha256 });
    } finally {
      this.unpin(fit.dir);
    }
  }

  /** Remove a template that did not work (it is rebuilt on a later boot). */
  async discard(dir: string, reason: string): Promise<void> {
    this.log.warn({ dir, reason }, 'boot template discarded');
    await rm(dir, { recursive: true, force: true });
  }

  /**
   * Release a waiting guest: wait for its agent, then write entropy, identity and the release mark.
   * Throws TIMEOUT when the agent never answers, and VM_BAD_STATE at once when `wanted()` turns false
   * (the VM was stopped or destroyed) or the templates are closed: a release of a VM that is gone must
   * not poll its agent for the rest of the timeout (it kept a closed VMM's process alive ~90 s).
   */
  async release(
    vm: DriverVm,
    ident: InstanceIdentity,
    opts: { timeoutMs?: number; wanted?: () => boolean } = {},
  ): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? 90_000;
    const files = identityFiles(ident, randomBytes(32).toString('hex'), Math.floor(Date.now() / 1000));
    const agent = this.o.driver.agent(vm);
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.closed || opts.wanted?.() === false) {
        throw new FormError('VM_BAD_STATE', `Cannot release VM ${vm.spec.id}: it was stopped or destroyed`);
      }
      try {
        await agent.ping(1000);
        break;
      } catch (err) {
        if (Date.now() > end) {
          throw new FormError(
            'TIMEOUT',
            `Cannot release VM ${vm.spec.id}: its guest agent did not answer in ${timeoutMs} ms`,
            {
              cause: err,
              hint: 'See the VM console; the guest waits for its identity at FORM-INIT-WAIT.',
            },
          );
        }
        await sleep(50);
      }
    }
    await this.o.driver.writeGuestFiles(vm, files);
  }

  /** Build the template for `want` unless one fits or a build failed before (one build at a time). */
  ensure(want: TemplateWant): Promise<TemplateMeta | undefined> {
    const key = `${want.formpackId}/${want.memMiB}/${want.vcpu}/${want.dataDiskMiB}`;
    const running = this.builds.get(key);
    if (running) return running;
    const queued = this.chain.then(async () => {
      if (this.closed) return undefined;
      if (this.failed.has(key)) return undefined;
      const qemu = await this.o.driver.templateIdentity();
      const fit = await this.lookup(want, qemu, join(this.fpDir(want.formpackId), qemuFingerprint(qemu)));
      if (fit.ok) return fit.meta;
      // A VM of another size cold-boots; it does not replace the Formpack's template.
      if (!fit.rebuild) return undefined;
      if (this.capability(want.formpackId).capable === false) return undefined;
      await this.delay(this.o.buildDelayMs ?? 10_000);
      // A build stopped to give its room to an instance (yieldRoom) waits for room again, a few times.
      for (let attempt = 0; attempt < 5; attempt++) {
        if (!(await this.waitForRoom(want))) return undefined;
        try {
          return await this.build(want);
        } catch (err) {
          const reason = (err as Error).message;
          if (this.yielded) continue;
          this.failed.set(key, reason);
          this.log.warn({ formpack: want.formpackId, reason }, 'boot template not built; its VMs cold-boot');
          return undefined;
        } finally {
          this.yielded = undefined;
          await this.gc().catch((err: unknown) =>
            this.log.warn({ err: (err as Error).message }, 'boot template GC failed'),
          );
        }
      }
      return undefined;
    });
    this.chain = queued.catch(() => undefined);
    const p = queued.finally(() => this.builds.delete(key));
    this.builds.set(key, p);
    return p;
  }

  /**
   * Wait until a template VM of `want`'s size fits in the node's capacity and the node is quiet
   * (options `fits`, `quiet`), looking again every `retryMs`. False when closed, or when it waited
   * `maxWaitMs` (not a failure: the next VM of the Formpack asks again).
   */
  private async waitForRoom(want: TemplateWant): Promise<boolean> {
    const end = Date.now() + (this.o.maxWaitMs ?? 600_000);
    let said: string | undefined;
    for (;;) {
      if (this.closed) return false;
      const held = this.holdUntil - Date.now();
      const why =
        (held > 0 ? `room given to an instance's VM (${held} ms more)` : undefined) ??
        this.o.fits?.({ vcpu: want.vcpu, memMiB: want.memMiB, diskGiB: 0 }) ??
        this.o.quiet?.();
      if (why === undefined) return true;
      if (why !== said) {
        this.log.info({ formpack: want.formpackId, reason: why }, 'boot template build waits');
        said = why;
      }
      if (Date.now() > end) {
        this.log.info({ formpack: want.formpackId, reason: why }, 'boot template build skipped for now');
        return false;
      }
      await this.delay(this.o.retryMs ?? 2000);
    }
  }

  /** Resolves when no build is running or queued. */
  async idle(): Promise<void> {
    while (this.builds.size > 0) await Promise.allSettled([...this.builds.values()]);
  }

  private async build(want: TemplateWant): Promise<TemplateMeta | undefined> {
    const qemu = await this.o.driver.templateIdentity();
    const fpDir = this.fpDir(want.formpackId);
    const final = join(fpDir, qemuFingerprint(qemu));
    const id = `tpl-${createHash('sha256').update(final).digest('hex').slice(0, 12)}`;
    const runDir = join(this.o.vmDir, id);
    const stateDir = `${final}.build`;
    await mkdir(fpDir, { recursive: true, mode: 0o700 });
    await chmod(this.o.root, 0o700).catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
    await rm(runDir, { recursive: true, force: true });
    const spec: DriverVmSpec = {
      id,
      name: 'template',
      vcpu: want.vcpu,
      memMiB: want.memMiB,
      dir: join(runDir, 'qemu'),
      kernel: want.kernel,
      initramfs: want.initramfs,
      cmdline: want.cmdline,
      baseDisk: want.baseDisk,
      baseDiskFormat: want.baseDiskFormat,
      diskGiB: want.diskGiB,
      dataDiskMiB: want.dataDiskMiB,
      // Reaches nothing: the template has no address before it is saved, and its TAP (made by QEMU,
      // gone with it) is on no bridge.
      network:
        want.netMode === 'tap'
          ? { mode: 'tap', tap: `ftpl${id.slice(4, 14)}`, mac: TEMPLATE_MAC, netns: want.netns }
          : { mode: 'user', forwards: [], mac: TEMPLATE_MAC, restrict: true },
      agentChannel: want.agentChannel,
    };
    const t0 = Date.now();
    // Counted as used from before its process starts until it is gone (the manager's capacity()).
    this.reserved = { vcpu: want.vcpu, memMiB: want.memMiB, diskGiB: 0 };
    this.pin(final);
    this.pin(stateDir);
    let vm: DriverVm | undefined;
    let info: SnapshotInfo;
    let bootMs: number;
    try {
      vm = await this.o.driver.create(spec);
      this.building = vm;
      // So a VMM killed mid-build (SIGKILL, a crash) can remove this VM's process at its next start.
      await writeFile(join(runDir, ORPHAN_FILE), JSON.stringify(vm), { mode: 0o600 });
      await this.o.driver.start(vm);
      const timeout = this.o.bootTimeoutMs ?? 120_000;
      let seen: ReturnType<typeof classifyTemplateBoot> = 'pending';
      while (seen === 'pending') {
        if (this.closed) return undefined;
        if (Date.now() - t0 > timeout) {
          throw new FormError(
            'TIMEOUT',
            `Cannot make a boot template: the guest did not reach its wait point in ${timeout} ms`,
          );
        }
        if ((await this.o.driver.status(vm)) === 'stopped') {
          throw new FormError('VM_HYPERVISOR', 'Cannot make a boot template: the template VM stopped while booting');
        }
        await sleep(100);
        seen = classifyTemplateBoot(consoleTail(vm.paths.serial));
      }
      if (seen === 'no-wait-point') {
        const reason = 'its guest init has no boot-snapshot wait point (vm_wait=identity): an older guest';
        await writeFile(join(fpDir, 'capability.json'), JSON.stringify({ capable: false, reason }), { mode: 0o600 });
        this.log.info({ formpack: want.formpackId, reason }, 'Formpack is not snapshot-capable; its VMs cold-boot');
        return undefined;
      }
      // The agent was started before the mark; make sure it answers (its state is saved with the VM).
      const agent = this.o.driver.agent(vm);
      for (let i = 0; ; i++) {
        try {
          await agent.ping(1000);
          break;
        } catch (err) {
          if (i > 60 || this.closed) throw err;
          await sleep(100);
        }
      }
      bootMs = Date.now() - t0;
      info = await this.o.driver.snapshot(vm, stateDir);
    } finally {
      this.building = undefined;
      if (vm) await this.o.driver.destroy(vm).catch(() => undefined);
      this.reserved = undefined;
      this.unpin(final);
      this.unpin(stateDir);
      await rm(runDir, { recursive: true, force: true });
    }
    const files: TemplateMeta['files'] = {};
    for (const name of STATE_FILES) {
      const p = join(stateDir, name);
      if (!existsSync(p)) continue;
      await chmod(p, 0o600);
      files[name] = { sha256: await sha256File(p), bytes: (await stat(p)).size };
    }
    await rm(join(stateDir, 'snapshot.json'), { force: true });
    const meta: TemplateMeta = {
      v: 1,
      want,
      qemu,
      files,
      createdAt: new Date().toISOString(),
      bootMs,
      saveMs: info.totalMs,
    };
    await writeFile(join(stateDir, 'template.json'), JSON.stringify(meta, null, 1), { mode: 0o600 });
    await chmod(stateDir, 0o700);
    await rm(final, { recursive: true, force: true });
    await rename(stateDir, final);
    await writeFile(join(fpDir, 'capability.json'), JSON.stringify({ capable: true }), { mode: 0o600 });
    this.log.info(
      { formpack: want.formpackId, dir: final, bootMs, saveMs: info.totalMs, memoryBytes: info.memoryBytes },
      'boot template saved',
    );
    return meta;
  }

  /** Wait `ms` unless closed meanwhile (close ends the wait: it never keeps a closed VMM alive). */
  private async delay(ms: number): Promise<void> {
    if (ms <= 0 || this.closed) return;
    await new Promise<void>((end) => {
      this.pause = { timer: setTimeout(end, ms), end };
    });
    this.pause = undefined;
  }

  /** Stop building (a template VM being booted is destroyed) and wait for the queue to settle. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    if (this.pause) {
      clearTimeout(this.pause.timer);
      this.pause.end();
    }
    const vm = this.building;
    if (vm) await this.o.driver.stop(vm, { force: true }).catch(() => undefined);
    await this.idle();
    await this.gcRun?.catch(() => undefined);
  }

  /**
   * Give the room of the template VM being booted back (a VM of an instance needs it): the template VM
   * is stopped and the build counted as not done, not as failed — the next VM of the Formpack asks
   * again. False when no build was running.
   */
  async yieldRoom(reason: string): Promise<boolean> {
    const vm = this.building;
    if (!vm) return false;
    this.yielded = reason;
    // Until the VM that asked is starting (then counted in the capacity and not quiet), no new build.
    this.holdUntil = Date.now() + 3000;
    this.log.info({ reason }, 'boot template build stopped: its room is needed');
    await this.o.driver.stop(vm, { force: true }).catch(() => undefined);
    // The build's own clean-up (destroy, release of the reservation) follows its stopped VM.
    for (let i = 0; i < 100 && this.reserved; i++) await sleep(50);
    return true;
  }
}

/** The last `max` bytes of a file, '' when unreadable (a guest may print without end: never read all of it). */
export function consoleTail(path: string, max = 256 * 1024): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const n = Math.min(size, max);
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, size - n);
    return buf.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
