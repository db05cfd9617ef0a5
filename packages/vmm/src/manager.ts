import { FormError, GUEST_READY_MARKER, type Resources } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { BootTemplates, BootTemplatesOptions } from './boot-snapshot.ts';
import { type CapacityConfig, checkCapacity, hostCapacity, sumResources } from './capacity.ts';
import type { DriverFingerprint, ExitInfo, HypervisorDriver } from './driver.ts';
import { intToIp, parseCidr, type VmNetwork } from './network.ts';
import { readFrom, tail } from './serial-console.ts';
import { assertAction, hasProcess, KeyedSerializer, type VmAction } from './state-machine.ts';
import type { VmStore } from './store.ts';
import type { RevisionRecord, SnapshotRecord, VmHealth, VmRecord, VmView } from './types.ts';
import { gpusGiven, usedResources } from './vm-accounting.ts';
import { launchVm, releaseIdentity } from './vm-boot.ts';
import type { VmContext } from './vm-context.ts';
import type { CreateVmRequest } from './vm-create.ts';
import { putDataDisk, replaceRootDisk, takeDataDisk } from './vm-disks.ts';
import { settleExit } from './vm-exit.ts';
import { entrypointGaveUp, probeHealth } from './vm-health.ts';
import { allocatedBytes, parseBlockstats, readTapIo, type VmIo } from './vm-io.ts';
import { newVm } from './vm-new.ts';
import { pauseVm, restartVm, resumeVm, startVm, stopVm } from './vm-power.ts';
import { ReadyWaiters } from './vm-ready.ts';
import { reattachVm } from './vm-recover.ts';
import { commitVm } from './vm-revision.ts';
import { becameReady, bootBegan, bootRunning, setVmState } from './vm-runtime.ts';
import { restoreVm, snapshotVm } from './vm-snapshot.ts';
import type { StandbyPool } from './vm-standby.ts';
import { removeStandbyVm, type StandbyManager, standbyPool, takeStandby } from './vm-standby-host.ts';
import { dropSuspended, suspendVm } from './vm-suspend.ts';
import { makeTemplates, scheduleTemplate } from './vm-templates.ts';
import { vmView } from './vm-view.ts';
import { WakeGate } from './wake-gate.ts';

export type { CreateVmRequest } from './vm-create.ts';

export interface VmManagerOptions {
  driver: HypervisorDriver;
  store: VmStore;
  network: VmNetwork;
  logger: Logger;
  formpacksDir: string;
  imagesDir: string;
  cacheDir: string;
  kernelPath?: string | undefined;
  initramfsPath?: string | undefined;
  /** Default data disk size (MiB) of Formpack VMs; 0 = none. */
  dataDiskMiB?: number | undefined;
  capacity?: CapacityConfig | undefined;
  stopTimeoutMs?: number | undefined;
  healthIntervalMs?: number | undefined;
  restartPolicy?: 'never' | 'on-failure' | undefined;
  maxRestarts?: number | undefined;
  /** Boot snapshots (README "Boot snapshots"): restore Formpack VMs from a per-node template. */
  bootSnapshots?: boolean | undefined;
  /**
   * Standby VMs (vm-standby.ts): for this many of the most recently used request shapes, one VM restored
   * paused from its template ahead of time, taken by the next create of that shape. Default 0 (none).
   */
  bootStandby?: number | undefined;
  /** Where templates live (default `<vmDir>/../templates`). */
  templatesDir?: string | undefined;
  /** Disk budget of all boot templates (MiB, default 2048): over it the least recently used are deleted. */
  bootSnapshotMaxMiB?: number | undefined;
  /**
   * A template boot waits for a quiet node: no VM starting or not yet ready, and none ready in the
   * last `templateQuietMs` (default 10 s).
   */
  templateQuietMs?: number | undefined;
  /** Template build timing (tests shorten it): wait before a build, look-again period, longest wait, GC period. */
  templateTiming?: Pick<BootTemplatesOptions, 'buildDelayMs' | 'retryMs' | 'maxWaitMs' | 'gcEveryMs'> | undefined;
  /**
   * Wake on connection (tap mode): while a VM is suspended, connections to its address and ports are
   * held by the node and the VM resumed, then spliced to it (wake-gate.ts). Default off.
   */
  wakeOnConnect?: boolean | undefined;
  /** Who decides a wake (the node's planner); default: resume. Rejecting leaves the VM suspended. */
  onWake?: ((id: string) => Promise<void>) | undefined;
}

/**
 * The VM manager: owns VM records (persisted), enforces the state machine, serializes actions per VM,
 * accounts resources, wires networking, watches readiness and health, and re-attaches to running VMs
 * after a restart. Talks to the hypervisor only through a `HypervisorDriver`.
 */
export class VmManager {
  private readonly o: VmManagerOptions;
  private readonly log: Logger;
  private readonly vms = new Map<string, VmRecord>();
  private readonly health = new Map<string, VmHealth>();
  private readonly lock = new KeyedSerializer();
  private readonly ready = new ReadyWaiters();
  private healthTimer: NodeJS.Timeout | undefined;
  private readyTimer: NodeJS.Timeout | undefined;
  private closed = false;
  fingerprint: DriverFingerprint | undefined;
  /** Boot templates, when enabled and the driver can restore them. */
  readonly templates: BootTemplates | undefined;
  private gate: WakeGate | undefined;
  private readonly waking = new Map<string, Promise<void>>();
  /** Standby VMs, when templates are on and `bootStandby` > 0. */
  private readonly standby: StandbyPool | undefined;
  private readonly standbyM: StandbyManager | undefined;
  /** What the lifecycle actions (vm-power, vm-suspend, vm-snapshot, vm-revision) use of the manager. */
  private readonly ctx: VmContext;

  constructor(o: VmManagerOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'vmm' });
    this.ctx = {
      o,
      log: this.log,
      setState: setVmState,
      save: (rec) => this.save(rec),
      view: (rec) => this.view(rec),
      checkFits: (rec) => this.checkFits(rec),
      boot: (rec, why) => this.boot(rec, why),
      wakeWaiters: (id) => this.wake(id),
      dropHealth: (id) => void this.health.delete(id),
      gate: () => this.gate,
      wakeOnConnect: (id) => this.wakeOnConnect(id),
    };
    this.templates = makeTemplates(o, { capacity: () => this.capacity(), records: () => this.vms.values() });
    if (this.templates && (o.bootStandby ?? 0) > 0) {
      const all = () => this.allRecords();
      this.standbyM = { o, log: this.log, templates: this.templates, allRecords: all, capacity: () => this.capacity() };
      this.standby = standbyPool(this.standbyM);
    }
    o.driver.onExit((info) => {
      void this.lock
        .run(info.id, () => this.onExit(info))
        .catch((err: unknown) => {
          this.log.error({ err, id: info.id }, 'handling a VM exit failed');
        });
    });
  }

  /** Fingerprint the driver, set up networking, load records and re-attach running VMs. */
  async init(): Promise<void> {
    this.fingerprint = await this.o.driver.fingerprint();
    if (!this.fingerprint.available) {
      throw new FormError('HOST_UNSUPPORTED', `Cannot run VMs here: ${this.fingerprint.reason}`);
    }
    await this.o.network.init();
    const net = this.o.network.cfg;
    if (this.o.wakeOnConnect && net.mode === 'tap') {
      this.gate = new WakeGate({
        netns: net.netns || undefined,
        bridge: net.bridge,
        host: intToIp(parseCidr(net.cidr).first),
        logger: this.o.logger,
      });
      await this.gate
        .reset()
        .catch((err: unknown) =>
          this.log.warn({ err: (err as Error).message }, 'wake rules of a previous run not removed'),
        );
    }
    const { records, bad } = this.o.store.loadAll();
    for (const b of bad) this.log.error({ id: b.id, error: b.error }, 'unreadable VM record kept on disk, skipped');
    for (const rec of records) {
      // A standby a previous VMM left (it holds no one's state): removed, its process ended.
      if (rec.standby) {
        await removeStandbyVm({ o: this.o, log: this.log }, rec, 'left by a previous run');
        continue;
      }
      this.vms.set(rec.id, rec);
      await reattachVm(this.ctx, rec);
      // A VM the previous VMM launched but had not released yet (it was killed meanwhile) waits for its
      // identity at the guest's wait point: release it again (a guest past that point ignores the files).
      if (rec.state === 'running' && !rec.ready && rec.bootSnapshot?.identity === 'agent') {
        releaseIdentity(rec, this.templates, this.log, 0);
      }
    }
    const every = this.o.healthIntervalMs ?? 5000;
    if (every > 0) {
      this.healthTimer = setInterval(() => void this.checkHealth(), every);
      this.healthTimer.unref();
    }
    this.readyTimer = setInterval(() => this.scanReady(), 200);
    this.readyTimer.unref();
    // A template VM a killed VMM left running goes; then templates of Formpacks gone or of another
    // QEMU, and any over the budget.
    await this.templates?.reapOrphans();
    void this.templates
      ?.gc()
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'boot template GC failed'));
  }

  // ---------- queries ----------

  get imagesDir(): string {
    return this.o.imagesDir;
  }

  list(): VmView[] {
    return [...this.vms.values()].map((r) => this.view(r));
  }

  get(id: string): VmView {
    return this.view(this.rec(id));
  }

  /** Host capacity and what running VMs use (a template VM being booted and standby VMs included). */
  capacity(): { capacity: Resources; used: Resources } {
    const tpl = this.templates?.inUse;
    const standby = (this.standby?.records() ?? []).map((r) => r.resources);
    return {
      capacity: hostCapacity(this.o.capacity ?? {}, this.o.store.dir),
      used: sumResources([usedResources(this.vms.values()), ...(tpl ? [tpl] : []), ...standby]),
    };
  }

  /** The VMs and the standby VMs (which are not listed). */
  private allRecords(): VmRecord[] {
    return [...this.vms.values(), ...(this.standby?.records() ?? [])];
  }

  /** The last `bytes` of the VM's serial console (of the current and earlier boots). */
  console(id: string, bytes = 16384): string {
    const rec = this.rec(id);
    return tail(rec.driver.paths.serial, bytes);
  }

  private rec(id: string): VmRecord {
    const r = this.vms.get(id);
    if (!r) throw new FormError('VM_NOT_FOUND', `Cannot find VM ${id}`, { hint: 'List VMs with GET /vms.' });
    return r;
  }

  private view(r: VmRecord): VmView {
    return vmView(r, this.health.get(r.id));
  }

  private authorize(rec: VmRecord, actor: string | undefined, action: string): void {
    if (actor === undefined || rec.owner === null || rec.owner.toLowerCase() === actor.toLowerCase()) return;
    throw new FormError('AUTH_FORBIDDEN', `Cannot ${action} VM ${rec.id}: it belongs to ${rec.owner}, not to ${actor}`);
  }

  private save(rec: VmRecord): void {
    if (this.vms.get(rec.id) === rec) this.o.store.save(rec);
  }

  // ---------- create ----------

  /** Create a VM from a Formpack id or an image name (and start it unless `start: false`). */
  async create(req: CreateVmRequest, owner: string | null = null): Promise<VmView> {
    if (this.closed) throw new FormError('UNAVAILABLE', 'Cannot create a VM: the VMM is shutting down');
    const standby = await this.fromStandby(req, owner);
    if (standby) return standby;
    const rec = await newVm(
      {
        o: this.o,
        log: this.log,
        templates: this.templates,
        records: () => this.allRecords(),
        add: (r) => this.vms.set(r.id, r),
      },
      req,
      owner,
    );
    const id = rec.id;
    if (req.start !== false) {
      try {
        await this.start(id, owner ?? undefined);
      } catch (err) {
        // The caller never learns the id of a VM whose create failed: remove it rather than leak it.
        this.log.warn({ id, err: (err as Error).message }, 'vm could not start; removing it');
        await this.destroy(id).catch(() => undefined);
        throw err;
      }
      scheduleTemplate(
        this.templates,
        rec,
        (i, ms) => this.waitReady(i, ms),
        () => this.closed,
      );
      if (rec.bootSnapshot) this.standby?.want(req, rec.bootSnapshot.want);
    }
    return this.get(id);
  }

  /** The VM of `req` from a ready standby of its shape (vm-standby.ts), or undefined (then it is made). */
  private async fromStandby(req: CreateVmRequest, owner: string | null): Promise<VmView | undefined> {
    const rec = this.standby?.take(req);
    if (!rec || !this.standbyM) return undefined;
    this.vms.set(rec.id, rec);
    try {
      await this.lock.run(rec.id, () => takeStandby(this.standbyM as StandbyManager, rec, req, owner));
    } catch (err) {
      this.vms.delete(rec.id);
      await removeStandbyVm(
        { o: this.o, log: this.log },
        rec,
        `not usable (${(err as Error).message}); the VM is made instead`,
      );
      return undefined;
    }
    if (rec.bootSnapshot) this.standby?.want(req, rec.bootSnapshot.want);
    return this.get(rec.id);
  }

  // ---------- actions ----------

  private act<T>(
    id: string,
    action: VmAction,
    actor: string | undefined,
    fn: (rec: VmRecord) => Promise<T>,
  ): Promise<T> {
    this.rec(id); // 404 before queueing
    return this.lock.run(id, async () => {
      const rec = this.rec(id);
      this.authorize(rec, actor, action);
      assertAction(id, rec.state, action);
      return fn(rec);
    });
  }

  private async checkFits(rec: VmRecord): Promise<void> {
    const { capacity, used } = this.capacity();
    try {
      checkCapacity(rec.id, rec.resources, used, capacity);
    } catch (err) {
      // An instance's VM comes before a template or a standby: they give their room back.
      const why = `VM ${rec.id} needs its room`;
      if (!(await this.standby?.yieldRoom(why)) && !(await this.templates?.yieldRoom(why))) throw err;
      const now = this.capacity();
      checkCapacity(rec.id, rec.resources, now.used, now.capacity);
    }
  }

  private async boot(rec: VmRecord, why: string): Promise<void> {
    await this.checkFits(rec);
    await this.o.network.attach(rec.network);
    const prev = rec.state;
    setVmState(rec, 'starting', why);
    bootBegan(rec);
    this.save(rec);
    try {
      // Boot snapshots (vm-boot.ts): restore the Formpack's template when one fits, else cold boot.
      await launchVm(rec, this.o.driver, this.templates, this.log);
    } catch (err) {
      setVmState(rec, prev === 'starting' ? 'stopped' : prev, `start failed: ${(err as Error).message}`);
      this.save(rec);
      throw err;
    }
    bootRunning(rec, why);
    this.save(rec);
  }

  /** Resolves when no boot template is being built and no standby VM made (tests, bench). */
  async templatesIdle(): Promise<void> {
    await sleep(0);
    await this.templates?.idle();
    await this.standby?.idle();
  }

  start(id: string, actor?: string): Promise<VmView> {
    return this.act(id, 'start', actor, (rec) => startVm(this.ctx, rec, actor));
  }

  stop(id: string, actor?: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<VmView> {
    return this.act(id, 'stop', actor, (rec) => stopVm(this.ctx, rec, actor, opts));
  }

  restart(id: string, actor?: string): Promise<VmView> {
    return this.act(id, 'restart', actor, (rec) => restartVm(this.ctx, rec, actor));
  }

  pause(id: string, actor?: string): Promise<VmView> {
    return this.act(id, 'pause', actor, (rec) => pauseVm(this.ctx, rec, actor));
  }

  resume(id: string, actor?: string): Promise<VmView> {
    return this.act(id, 'resume', actor, (rec) => resumeVm(this.ctx, rec, actor));
  }

  /** Suspend to disk (scale to zero; vm-suspend.ts). `resume` (or `start`) brings it back. */
  suspend(id: string, actor?: string): Promise<VmView> {
    return this.act(id, 'suspend', actor, (rec) => suspendVm(this.ctx, rec, actor));
  }

  /** A connection came for a suspended VM: one wake at a time (the node's planner decides, else resume). */
  wakeOnConnect(id: string): Promise<void> {
    let p = this.waking.get(id);
    if (!p) {
      p = (async () => {
        // Held while its memory is still being saved: decide once the suspend has ended (the VM's lock).
        if (this.vms.get(id)?.state === 'suspending') await this.lock.run(id, async () => undefined);
        if (this.vms.get(id)?.state !== 'suspended') return;
        if (this.o.onWake) await this.o.onWake(id);
        else await this.resume(id);
      })().finally(() => this.waking.delete(id));
      this.waking.set(id, p);
    }
    return p;
  }

  /** PCI addresses of the GPUs given to this node's VMs (a GPU stays given until its VM is destroyed). */
  gpusInUse(): string[] {
    return gpusGiven(this.vms.values());
  }

  /** Disk and network I/O of a VM for metrics (`vm-io.ts`): block stats over QMP, qcow2 allocation, TAP counters. */
  async io(id: string): Promise<VmIo> {
    const r = this.rec(id);
    const live = hasProcess(r.state) && r.state !== 'suspended';
    const stats = live && this.o.driver.blockStats ? await this.o.driver.blockStats(r.driver).catch(() => []) : [];
    const files = [r.driver.paths.disk, ...(r.driver.paths.data ? [r.driver.paths.data] : [])];
    return {
      disks: parseBlockstats(stats),
      diskAllocatedBytes: await allocatedBytes(files),
      net: live ? await readTapIo(r.network.tap, r.network.netns) : null,
    };
  }

  /** Bytes through the VM's TAP so far (tap mode), for idle detection; undefined when not measurable. */
  traffic(id: string): Promise<{ rxBytes: number; txBytes: number } | undefined> {
    return this.o.network.counters(this.rec(id).network);
  }

  /** Snapshot a running or paused VM (vm-snapshot.ts). */
  snapshot(id: string, actor?: string): Promise<Omit<SnapshotRecord, 'dir'>> {
    return this.act(id, 'snapshot', actor, (rec) => snapshotVm(this.ctx, rec));
  }

  /** Record the VM's disk as a new revision (`form commit`; vm-revision.ts): frozen, paused, copied, hashed. */
  commit(id: string, actor?: string): Promise<RevisionRecord> {
    return this.act(id, 'commit', actor, (rec) => commitVm(this.ctx, rec));
  }

  /** Restore a snapshot (the latest when `snapshotId` is undefined) and run it. */
  restore(id: string, snapshotId: string | undefined, actor?: string): Promise<VmView> {
    return this.act(id, 'restore', actor, (rec) => restoreVm(this.ctx, rec, snapshotId, actor));
  }

  /**
   * Make a VM that has no process (created, stopped, crashed) boot `image` next time: a disk another VM
   * of the same base committed (the node fetches revisions from peers). The driver checks it and swaps
   * it in (vm-disks.ts); a refused image leaves the disk as it was. 409 VM_BAD_STATE in other states.
   */
  replaceDisk(id: string, image: string, actor?: string): Promise<VmView> {
    return this.act(id, 'replace-disk', actor, (rec) => replaceRootDisk(this.ctx, rec, image));
  }

  /** Move a stopped VM's data disk to `dest` for the instance's next VM (vm-disks.ts); false without one. */
  takeDataDisk(id: string, dest: string, actor?: string): Promise<boolean> {
    return this.act(id, 'replace-disk', actor, (rec) => takeDataDisk(this.ctx, rec, dest));
  }

  /** Put a data disk taken from an earlier VM in place of this (not started) VM's empty one (vm-disks.ts). */
  putDataDisk(id: string, src: string, actor?: string): Promise<boolean> {
    return this.act(id, 'replace-disk', actor, (rec) => putDataDisk(this.ctx, rec, src));
  }

  destroy(id: string, actor?: string): Promise<void> {
    return this.act(id, 'destroy', actor, async (rec) => {
      await dropSuspended(this.ctx, rec);
      await this.o.driver.destroy(rec.driver);
      await this.o.network.detach(rec.network);
      setVmState(rec, 'destroyed', actor ? `destroyed by ${actor}` : 'destroyed');
      this.vms.delete(id);
      this.health.delete(id);
      this.o.store.remove(id);
      // Whoever waits for it to be ready (a template build, a caller) hears now, not at its timeout.
      this.wake(id);
      this.log.info({ id }, 'vm destroyed');
    });
  }

  /** Run a command in the guest through the agent (tests, health, the node daemon). */
  exec(id: string, path: string, args: string[] = [], timeoutMs = 10_000) {
    const rec = this.rec(id);
    if (rec.state !== 'running') throw new FormError('VM_BAD_STATE', `Cannot exec in VM ${id}: it is ${rec.state}`);
    return this.o.driver.agent(rec.driver).exec(path, args, timeoutMs);
  }

  /** The guest agent of a running VM (the log collector reads guest files through it). */
  agent(id: string): ReturnType<HypervisorDriver['agent']> {
    const rec = this.rec(id);
    if (rec.state !== 'running')
      throw new FormError('VM_BAD_STATE', `Cannot reach the agent of VM ${id}: it is ${rec.state}`);
    return this.o.driver.agent(rec.driver);
  }

  /** Resolve once the guest printed FORM-INIT-READY (or reject after `timeoutMs`). */
  waitReady(id: string, timeoutMs = 60_000): Promise<VmView> {
    const rec = this.rec(id);
    if (rec.ready) return Promise.resolve(this.view(rec));
    return this.ready.wait(
      id,
      timeoutMs,
      (i) => this.vms.get(i),
      (r) => this.view(r),
    );
  }

  private wake(id: string): void {
    this.ready.wake(id);
  }

  private scanReady(): void {
    for (const rec of this.vms.values()) {
      if (rec.ready || rec.state !== 'running') continue;
      const text = readFrom(rec.driver.paths.serial, rec.serialOffset);
      const m = text.indexOf(GUEST_READY_MARKER);
      if (m >= 0) {
        becameReady(rec);
        this.save(rec);
        this.log.info({ id: rec.id, bootMs: rec.bootMs }, 'vm ready');
        this.wake(rec.id);
      }
    }
  }

  /** One round of health checks (guest agent ping + entrypoint state) for ready, running VMs. */
  async checkHealth(): Promise<void> {
    for (const rec of [...this.vms.values()]) {
      if (rec.state !== 'running' || !rec.ready) continue;
      const h = await probeHealth(this.o.driver.agent(rec.driver));
      const prev = this.health.get(rec.id);
      if (!this.vms.has(rec.id) || rec.state !== 'running') continue;
      this.health.set(rec.id, h);
      // The guest init restarts its entrypoint itself; "exited" twice in a row with the same restart
      // count means it gave up: the instance is reported, and restarted per policy.
      const ep = h.entrypoint;
      if (ep?.status === 'exited' && entrypointGaveUp(prev, h)) {
        h.acted = true;
        this.log.warn({ id: rec.id, entrypoint: ep }, 'vm entrypoint died');
        if (rec.restartPolicy === 'on-failure' && rec.restarts < (this.o.maxRestarts ?? 3) && !this.closed) {
          void this.lock
            .run(rec.id, async () => {
              if (rec.state !== 'running' || this.vms.get(rec.id) !== rec) return;
              rec.restarts++;
              setVmState(rec, 'stopping', 'restarting per policy');
              await this.o.driver.stop(rec.driver, { timeoutMs: this.o.stopTimeoutMs ?? 10_000 });
              setVmState(rec, 'stopped', 'restarting per policy');
              await this.boot(rec, `restarted by policy: entrypoint exited with code ${ep.code}`);
            })
            .catch((err: unknown) => this.log.error({ err, id: rec.id }, 'policy restart failed'));
        }
      }
    }
  }

  private async onExit(info: ExitInfo): Promise<void> {
    const rec = this.vms.get(info.id);
    if (rec) await settleExit(this.ctx, rec, info, this.closed);
  }

  /**
   * Stop background work. `stopVms: true` also stops (forced) every VM and tears the network down;
   * otherwise VMs keep running and a new VMM re-attaches to them.
   */
  async close(opts: { stopVms?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    if (this.readyTimer) clearInterval(this.readyTimer);
    await this.standby?.close();
    await this.templates?.close();
    await this.gate?.close();
    if (opts.stopVms) {
      for (const rec of [...this.vms.values()]) {
        if (!hasProcess(rec.state)) continue;
        await this.lock.run(rec.id, async () => {
          await this.o.driver.stop(rec.driver, { force: true }).catch(() => undefined);
          setVmState(rec, 'stopped', 'stopped at VMM shutdown');
          this.save(rec);
        });
      }
    }
    await this.o.driver.close();
    const anyAlive = [...this.vms.values()].some((r) => hasProcess(r.state));
    if (!anyAlive) {
      for (const rec of this.vms.values()) await this.o.network.detach(rec.network);
      await this.o.network.close();
    }
  }

  /** Remove every VM (destroy), used by tests and `form node down --purge`. */
  async destroyAll(): Promise<void> {
    for (const id of [...this.vms.keys()]) await this.destroy(id).catch(() => undefined);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
