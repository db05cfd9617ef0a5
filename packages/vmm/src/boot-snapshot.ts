import { existsSync, readFileSync } from 'node:fs';
import { readdir, rm, rmdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError, type Resources } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { DriverVm } from './driver.ts';
import { type InstanceIdentity, releaseIdentity } from './instance-identity.ts';
import type { QemuIdentity } from './qemu-identity.ts';
import { buildTemplate, reapTemplateOrphans } from './template-build.ts';
import {
  lookupTemplate,
  qemuFingerprint,
  type TemplateDriver,
  type TemplateFit,
  type TemplateMeta,
  type TemplateWant,
} from './template-fit.ts';
import { planTemplateGc, scanTemplates, type TemplateDeletion } from './template-gc.ts';

/**
 * Boot snapshots (issue 22): per Formpack and node, one template VM is booted with an instance-neutral
 * command line (`vm_wait=identity`) to the guest init's wait point — before any host key, attestation
 * key, hostname, address, data disk or secret exists — and its memory + device state is saved. Later VMs
 * of that Formpack restore it into their own overlay and are then released with their own identity
 * over the guest agent (files under /run/form). Whatever does not fit is cold-booted, with the reason.
 */
// Its parts: instance-identity.ts (neutral cmdline, identity files, release), template-fit.ts (what a
// template is made of, whether one fits), template-build.ts (booting and saving one); here the store:
// the build queue and its wait for room, lookup with pins, restore, the GC's deletions.
export {
  classifyTemplateBoot,
  consoleTail,
  type InstanceIdentity,
  identityFiles,
  neutralCmdline,
  TEMPLATE_MAC,
  WAIT_MARK,
  WAIT_WORD,
} from './instance-identity.ts';
export {
  isTemplateDriver,
  qemuFingerprint,
  type TemplateDriver,
  type TemplateFit,
  type TemplateMeta,
  type TemplateWant,
  templateMismatch,
} from './template-fit.ts';

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
    return reapTemplateOrphans(this.o.driver, this.o.vmDir, this.log, this.building?.spec.id);
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

  private lookup(want: TemplateWant, qemu: QemuIdentity, dir: string): Promise<TemplateFit> {
    return lookupTemplate(want, qemu, dir, this.fpDir(want.formpackId));
  }

  /** Restore a fitting template into `vm` (its memory verified before the VM runs; `paused`: left paused). */
  async restore(vm: DriverVm, fit: Extract<TemplateFit, { ok: true }>, opts: { paused?: boolean } = {}): Promise<void> {
    const mem = fit.meta.files['memory.mig'];
    try {
      // Its last use, for the GC's least-recently-used order.
      const now = new Date();
      await utimes(join(fit.dir, 'template.json'), now, now).catch(() => undefined);
      await this.o.driver.restore(vm, fit.dir, { memorySha256: mem?.sha256, paused: opts.paused });
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
    await releaseIdentity(this.o.driver, vm, ident, { ...opts, closed: () => this.closed });
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

  /** Whether a template fits `want` now (a standby is made from it); nothing is pinned. */
  async has(want: TemplateWant): Promise<boolean> {
    const qemu = await this.o.driver.templateIdentity();
    const fit = await this.lookup(want, qemu, join(this.fpDir(want.formpackId), qemuFingerprint(qemu))).catch(
      () => undefined,
    );
    return fit?.ok === true;
  }

  /** Whether a build is running or queued. */
  get busy(): boolean {
    return this.builds.size > 0;
  }

  /** Resolves when no build is running or queued. */
  async idle(): Promise<void> {
    while (this.builds.size > 0) await Promise.allSettled([...this.builds.values()]);
  }

  private build(want: TemplateWant): Promise<TemplateMeta | undefined> {
    return buildTemplate(
      {
        driver: this.o.driver,
        root: this.o.root,
        vmDir: this.o.vmDir,
        bootTimeoutMs: this.o.bootTimeoutMs,
        log: this.log,
        closed: () => this.closed,
        fpDir: (id) => this.fpDir(id),
        setBuilding: (vm) => {
          this.building = vm;
        },
        reserve: (r) => {
          this.reserved = r;
        },
        pin: (dir) => this.pin(dir),
        unpin: (dir) => this.unpin(dir),
      },
      want,
    );
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
