import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomHex } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { decodeCheckpoint } from './checkpoint.ts';
import { CheckpointFiles } from './checkpoint-files.ts';
import type { ContainerBackend } from './container-backend.ts';
import { ContainerVm } from './container-vm.ts';
import { notPassable, ownedDir } from './dirs.ts';
import type { StoredImage } from './image-store.ts';
import {
  applyRecovering,
  checkpointLocked,
  exclusive,
  type Managed,
  type ManagedContext,
  rebuild,
} from './managed-process.ts';
import { loadModulesDir, moduleImage, parseModule } from './module.ts';
import { newChainBudget } from './outbox.ts';
import { type DeliveryHost, deliverOutbox } from './outbox-delivery.ts';
import {
  newItemId,
  type ProcessInfo,
  type ProcessManagerOptions,
  type SendInput,
  type SendOutput,
} from './process-types.ts';
import type { UserNamespace } from './runc.ts';
import { RuncBackend } from './runc-backend.ts';
import type { LogEntry, ProcessRecord } from './runtime-store.ts';
import type { Meta, Result, RuntimeModule } from './types.ts';

// The manager's parts, each in its own module (the public names stay exported from here).
export {
  newItemId,
  type ProcessInfo,
  type ProcessManagerOptions,
  type SendInput,
  type SendOutput,
} from './process-types.ts';

/**
 * Runs processes: one container each (runc, or the `ContainerBackend` given in the options), messages
 * applied one at a time per process, every message logged in Redis before it is applied, checkpoints
 * every N messages. A container that dies (killed
 * from outside, out of memory, wedged) is replaced by a fresh one restored from the last checkpoint
 * with the logged messages after it replayed; on start, every registered process is rebuilt the same way.
 */
export class ProcessManager {
  private readonly o: ProcessManagerOptions;
  private readonly log: Logger;
  private readonly modules = new Map<string, RuntimeModule>();
  private readonly procs = new Map<string, Managed>();
  private monitor: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly deliveries = new Set<Promise<void>>();
  private readonly checkpoints: CheckpointFiles;
  private readonly backend: ContainerBackend;

  /** The user namespace containers get (undefined: none, see start()). */
  userns: UserNamespace | undefined;

  /** What managed-process.ts and outbox-delivery.ts use of the manager. */
  private readonly ctx: ManagedContext;
  private readonly deliveryHost: DeliveryHost;

  constructor(o: ProcessManagerOptions) {
    this.o = o;
    this.userns = o.userns;
    this.log = o.logger.child({ component: 'runtime-manager' });
    this.backend =
      o.backend ?? new RuncBackend({ runcRoot: o.runcRoot, logger: o.logger, ...(o.runc ? { runc: o.runc } : {}) });
    this.checkpoints = new CheckpointFiles(join(o.dataDir, 'checkpoints'));
    this.ctx = {
      store: o.store,
      log: this.log,
      checkpoints: this.checkpoints,
      newContainer: (rec) => this.newContainer(rec),
      isClosed: () => this.closed,
    };
    this.deliveryHost = {
      log: this.log,
      isClosed: () => this.closed,
      hasModule: (id) => this.modules.has(id),
      hasProcess: (id) => this.procs.has(id),
      spawn: (input) => this.spawn(input),
      send: (pid, input) => this.send(pid, input),
    };
  }

  /** Load modules (modules dir, then Redis) and rebuild every registered process. */
  async start(): Promise<{ modules: number; processes: number; moduleErrors: string[] }> {
    // 0711: a container's image root (under images/) must be reachable from its user namespace
    await ownedDir(this.o.dataDir, 0o711);
    await ownedDir(this.checkpoints.dir);
    await ownedDir(this.o.runcRoot);
    await ownedDir(this.o.images.dir, 0o711);
    if (this.userns) {
      const blocked = await notPassable(this.o.images.dir);
      if (blocked) {
        this.log.warn(
          { dir: blocked },
          `user namespace off: ${blocked} does not let other users pass (chmod o+x, or put dataDir elsewhere), so a container's namespaced root could not reach its image; containers run with seccomp, no capabilities but one, no-new-privileges and a non-root user only`,
        );
        this.userns = undefined;
      }
    }
    await this.removeStaleContainers();
    let moduleErrors: string[] = [];
    if (this.o.modulesDir) {
      const r = await loadModulesDir(this.o.modulesDir);
      moduleErrors = r.errors;
      for (const e of r.errors) this.log.warn({ error: e }, 'module file refused');
      for (const m of r.modules) this.modules.set(m.id, m);
    }
    for (const m of await this.o.store.listModules()) this.modules.set(m.id, m);
    const recs = await this.o.store.listProcesses();
    for (const rec of recs) {
      const p: Managed = {
        rec,
        vm: undefined,
        lastSeq: await this.o.store.lastSequence(rec.id),
        sinceCheckpoint: 0,
        recoveries: 0,
        queue: Promise.resolve(),
      };
      this.procs.set(rec.id, p);
      await exclusive(p, () => rebuild(this.ctx, p, p.lastSeq)).catch((err) =>
        this.log.error(
          { err, processId: rec.id },
          'cannot rebuild process; it stays registered and is retried on its next message',
        ),
      );
    }
    if (this.o.monitorIntervalMs > 0) {
      this.monitor = setInterval(() => this.checkContainers(), this.o.monitorIntervalMs);
      this.monitor.unref();
    }
    this.log.info({ modules: this.modules.size, processes: recs.length }, 'runtime started');
    return { modules: this.modules.size, processes: recs.length, moduleErrors };
  }

  /** Containers left by a previous run that did not shut down cleanly (crash, SIGKILL). */
  private async removeStaleContainers(): Promise<void> {
    const dir = await ownedDir(join(this.o.dataDir, 'containers'));
    for (const id of await readdir(dir)) {
      await this.backend.removeStale(id);
      await rm(join(dir, id), { recursive: true, force: true });
      this.log.info({ container: id }, 'removed stale container');
    }
  }

  /** Stop the containers (processes stay registered in Redis and come back on the next start). */
  async close(): Promise<void> {
    await this.settled().catch(() => undefined);
    this.closed = true;
    if (this.monitor) clearInterval(this.monitor);
    await Promise.all(
      [...this.procs.values()].map(async (p) => {
        await p.queue.catch(() => undefined);
        await p.vm?.close().catch(() => undefined);
        p.vm = undefined;
      }),
    );
  }

  // ---- modules and images ----

  async registerModule(raw: unknown): Promise<RuntimeModule> {
    const mod = parseModule(raw);
    await this.o.store.putModule(mod);
    this.modules.set(mod.id, mod);
    return mod;
  }

  listModules(): RuntimeModule[] {
    return [...this.modules.values()];
  }

  module(id: string): RuntimeModule {
    const m = this.modules.get(id);
    if (!m)
      throw new FormError('RUNTIME_MODULE_NOT_FOUND', `Cannot find module ${id}`, {
        hint: 'List modules with `form runtime module list`.',
      });
    return m;
  }

  /** The module's image from the store, verified against its Image-ID before any container starts. */
  private async imageFor(mod: RuntimeModule): Promise<StoredImage> {
    const want = moduleImage(mod);
    const img = await this.o.images.verified(want.id);
    if (!img.repoTags.includes(want.name))
      this.log.warn(
        { module: mod.id, imageName: want.name, repoTags: img.repoTags },
        'image found by Image-ID carries another name',
      );
    return img;
  }

  // ---- processes ----

  private managed(pid: string): Managed {
    const p = this.procs.get(pid);
    if (!p)
      throw new FormError('RUNTIME_PROCESS_NOT_FOUND', `Cannot find process ${pid} on this node`, {
        hint: 'List processes with `form runtime list`.',
      });
    return p;
  }

  private async newContainer(rec: ProcessRecord): Promise<ContainerVm> {
    const img = await this.imageFor(this.module(rec.moduleId));
    const cid = `formrt-${rec.id.slice(0, 12).replace(/[^A-Za-z0-9_-]/g, '_')}-${randomHex(3)}`;
    const container = await this.backend.start({
      id: cid,
      bundleDir: join(this.o.dataDir, 'containers', cid),
      rootfs: img.rootfs,
      image: img.config,
      limits: this.o.limits,
      env: [`FORM_RT_APPLY_TIMEOUT_MS=${this.o.applyTimeoutMs}`],
      ...(this.userns ? { userns: this.userns } : {}),
    });
    return new ContainerVm(container, rec.id, this.o.applyTimeoutMs);
  }

  /** Spawn a process from a module: a new container, the spawn call, and checkpoint 0. */
  async spawn(input: {
    /** Process id (AO: the spawn data item's id); a new random id when absent. */
    id?: string;
    module: string;
    owner: string;
    data?: string;
    tags?: Array<{ name: string; value: string }>;
  }): Promise<ProcessInfo> {
    const mod = this.module(input.module);
    if (input.id !== undefined && (!/^[A-Za-z0-9_-]{1,64}$/.test(input.id) || this.procs.has(input.id)))
      throw new FormError('CONFLICT', `Cannot spawn process ${input.id}: the id is taken or malformed`);
    const rec: ProcessRecord = {
      id: input.id ?? newItemId(),
      moduleId: mod.id,
      owner: input.owner,
      data: input.data ?? '',
      tags: input.tags ?? [],
      createdAt: new Date().toISOString(),
      checkpoint: { sha256: '', sequence: 0 },
    };
    const vm = await this.newContainer(rec);
    const p: Managed = { rec, vm, lastSeq: 0, sinceCheckpoint: 0, recoveries: 0, queue: Promise.resolve() };
    try {
      await vm.spawn({
        processId: rec.id,
        owner: rec.owner,
        data: rec.data,
        tags: rec.tags,
        cuAddr: this.o.nodeUrl,
        module: { id: mod.id, tags: mod.tags },
      });
      await checkpointLocked(this.ctx, p, false);
      await this.o.store.putProcess(rec);
    } catch (err) {
      await vm.close().catch(() => undefined);
      throw err;
    }
    this.procs.set(rec.id, p);
    this.log.info({ processId: rec.id, module: mod.id, container: vm.container.id }, 'process spawned');
    return this.info(p);
  }

  listProcesses(): ProcessInfo[] {
    return [...this.procs.values()].map((p) => this.info(p));
  }

  process(pid: string): ProcessInfo {
    return this.info(this.managed(pid));
  }

  private info(p: Managed): ProcessInfo {
    const c = p.vm?.container;
    return {
      id: p.rec.id,
      moduleId: p.rec.moduleId,
      owner: p.rec.owner,
      tags: p.rec.tags,
      createdAt: p.rec.createdAt,
      lastSequence: p.lastSeq,
      checkpoint: p.rec.checkpoint,
      container: c ? { id: c.id, hostPid: c.pid ?? null, alive: c.alive() } : null,
      recoveries: p.recoveries,
    };
  }

  /** Apply a message. Handler errors and time limits come back in `result.error`. */
  send(pid: string, input: SendInput): Promise<SendOutput> {
    const p = this.managed(pid);
    if (!input.action && input.hops === undefined)
      throw new FormError('BAD_REQUEST', 'Cannot send a message without an Action');
    const run = exclusive(p, async (): Promise<SendOutput> => {
      const mode = input.mode ?? 'apply';
      const itemId = input.itemId ?? newItemId();
      if (mode !== 'dry-run' && (await this.o.store.sequenceOf(pid, itemId)) !== undefined)
        throw new FormError('CONFLICT', `Cannot apply message ${itemId} to ${pid}: it was already applied`);
      const sequence = mode === 'dry-run' ? 0 : p.lastSeq + 1;
      const meta: Meta = {
        itemId,
        processId: pid,
        action: input.action,
        sender: input.from,
        sequence,
        nonce: sequence,
        timestamp: input.timestamp ?? Date.now(),
        params: input.params ?? {},
        data: input.data ?? '',
        mode,
      };
      if (mode === 'dry-run')
        return { processId: pid, itemId, sequence, result: await applyRecovering(this.ctx, p, input.from, meta) };
      // a process that cannot run right now (image gone, runc failing) refuses the message instead of logging it
      if (!p.vm || !p.vm.container.alive()) await rebuild(this.ctx, p, p.lastSeq);
      await this.o.store.putMessage(pid, { from: input.from, meta });
      p.lastSeq = sequence;
      const result = await applyRecovering(this.ctx, p, input.from, meta);
      await this.o.store.putResult(pid, sequence, result);
      p.sinceCheckpoint++;
      if (p.sinceCheckpoint >= this.o.checkpointEvery) await checkpointLocked(this.ctx, p, true);
      return { processId: pid, itemId, sequence, result };
    });
    // the outbox goes out after the message is done, outside its process's queue: a reply to the
    // sender then queues behind it instead of waiting on it
    return run.then((out) => {
      if (out.sequence > 0 && (out.result.messages.length > 0 || out.result.spawns.length > 0)) {
        const d = deliverOutbox(this.deliveryHost, pid, out, input.hops ?? 0, input.chain ?? newChainBudget()).catch(
          (err) => this.log.warn({ err, processId: pid, itemId: out.itemId }, 'outbox delivery failed'),
        );
        this.deliveries.add(d);
        void d.finally(() => this.deliveries.delete(d));
      }
      return out;
    });
  }

  /** Resolves when every outbox delivery started so far (and the ones they started) is done. */
  async settled(): Promise<void> {
    while (this.deliveries.size > 0) await Promise.all([...this.deliveries]);
  }

  private checkContainers(): void {
    for (const p of this.procs.values()) {
      if (!p.vm || p.vm.container.alive()) continue;
      this.log.warn(
        { processId: p.rec.id, container: p.vm.container.id },
        'container died; restoring from the last checkpoint',
      );
      void exclusive(p, async () => {
        if (p.vm && !p.vm.container.alive()) await rebuild(this.ctx, p, p.lastSeq);
      }).catch((err) => this.log.error({ err, processId: p.rec.id }, 'cannot rebuild process'));
    }
  }

  /** Checkpoint now; the process resumes from here after a crash or restart. */
  checkpoint(pid: string): Promise<{ sha256: string; sequence: number; size: number }> {
    const p = this.managed(pid);
    return exclusive(p, () => checkpointLocked(this.ctx, p, true));
  }

  /** The checkpoint blob itself (to move a process to another node). */
  async checkpointData(pid: string, sha256: string): Promise<string> {
    this.managed(pid);
    return this.checkpoints.read(sha256);
  }

  /**
   * Restore a process to a checkpoint (by sha256 of one stored here, or the blob itself). A corrupt
   * or foreign checkpoint is refused and the process keeps its state. Later messages continue the
   * sequence; the restored state becomes the new recovery point.
   */
  restore(pid: string, ref: { sha256?: string; data?: string }): Promise<ProcessInfo> {
    const p = this.managed(pid);
    return exclusive(p, async () => {
      const data = ref.data ?? (ref.sha256 ? await this.checkpoints.read(ref.sha256) : undefined);
      if (data === undefined)
        throw new FormError('BAD_REQUEST', 'Cannot restore: give a checkpoint sha256 or its data');
      decodeCheckpoint(data);
      if (!p.vm || !p.vm.container.alive()) await rebuild(this.ctx, p, p.lastSeq);
      await (p.vm as ContainerVm).restore(data);
      await this.checkpoints.save(data);
      await checkpointLocked(this.ctx, p, true);
      return this.info(p);
    });
  }

  /** Result of a logged message, by sequence number or message id. */
  async result(
    pid: string,
    ref: string,
  ): Promise<{ sequence: number; itemId: string; entry: LogEntry; result: Result | null }> {
    this.managed(pid);
    const seq = /^\d+$/.test(ref) ? Number(ref) : await this.o.store.sequenceOf(pid, ref);
    const entry = seq === undefined ? undefined : (await this.o.store.entries(pid, seq, seq))[0];
    if (seq === undefined || !entry) throw new FormError('NOT_FOUND', `Cannot find message ${ref} of process ${pid}`);
    const [result] = await this.o.store.results(pid, seq, seq);
    return { sequence: seq, itemId: entry.meta.itemId, entry, result: result ?? null };
  }

  async results(
    pid: string,
    from: number,
    limit: number,
  ): Promise<Array<{ sequence: number; itemId: string; result: Result | null }>> {
    const p = this.managed(pid);
    const to = Math.min(p.lastSeq, from + limit - 1);
    const entries = await this.o.store.entries(pid, from, to);
    const results = await this.o.store.results(pid, from, to);
    return entries.map((e, i) => ({ sequence: e.meta.sequence, itemId: e.meta.itemId, result: results[i] ?? null }));
  }

  /** Stop a process for good: container removed, registry and log deleted. */
  terminate(pid: string): Promise<void> {
    const p = this.managed(pid);
    return exclusive(p, async () => {
      await p.vm?.close();
      p.vm = undefined;
      await this.o.store.deleteProcess(pid);
      this.procs.delete(pid);
      await this.checkpoints.remove(p.rec.checkpoint.sha256);
    });
  }
}
