import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { randomHex } from '@formation/identity';
import { FormError, isFormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { decodeCheckpoint } from './checkpoint.ts';
import { ContainerVm } from './container-vm.ts';
import { ownedDir } from './dirs.ts';
import type { ImageStore, StoredImage } from './image-store.ts';
import { loadModulesDir, moduleImage, parseModule } from './module.ts';
import { type ChainBudget, MAX_HOPS, newChainBudget, planOutbox, spawnedNotice } from './outbox.ts';
import { type ContainerLimits, RuncContainer, type UserNamespace } from './runc.ts';
import type { LogEntry, ProcessRecord, RuntimeStore } from './store.ts';
import type { ApplyMode, Meta, Result, RuntimeModule } from './types.ts';

const execFileP = promisify(execFile);

/**
 * The first directory from `dir` up to / that other users cannot pass (no o+x), or undefined.
 * The image store and the data dir are ours: given o+x (not r, not w) when they lack it.
 */
async function notPassable(dir: string): Promise<string | undefined> {
  const uid = process.getuid?.();
  for (let d = dir, own = 2; ; d = dirname(d), own--) {
    const st = await stat(d);
    if ((st.mode & 0o001) === 0) {
      if (own > 0 && st.uid === uid) await chmod(d, (st.mode & 0o7777) | 0o011);
      else return d;
    }
    if (dirname(d) === d) return undefined;
  }
}

export interface ProcessManagerOptions {
  store: RuntimeStore;
  images: ImageStore;
  logger: Logger;
  /** Holds containers/ (bundles, workspaces) and checkpoints/ (content-addressed blobs). */
  dataDir: string;
  modulesDir?: string;
  runcRoot: string;
  runc?: string;
  limits: ContainerLimits;
  applyTimeoutMs: number;
  /** Take a checkpoint every N applied messages (bounds replay after a crash). */
  checkpointEvery: number;
  /** How often to look for containers that died; 0 disables the monitor. */
  monitorIntervalMs: number;
  nodeId: string;
  nodeUrl: string;
  /**
   * Run containers in a user namespace (container root = this unprivileged host range). Used only
   * when every directory above the image store lets other users pass (x), as the namespace's root
   * must reach the image root; otherwise a warning says why not.
   */
  userns?: UserNamespace;
}

/** What the API shows about a process. */
export interface ProcessInfo {
  id: string;
  moduleId: string;
  owner: string;
  /** The spawn's tags (AO: Name, Data-Protocol, …). */
  tags: Array<{ name: string; value: string }>;
  createdAt: string;
  lastSequence: number;
  checkpoint: { sha256: string; sequence: number };
  container: { id: string; hostPid: number | null; alive: boolean } | null;
  /** How often the process was rebuilt from its checkpoint after its container died. */
  recoveries: number;
}

export interface SendInput {
  from: string;
  action: string;
  data?: string;
  params?: Record<string, string>;
  itemId?: string;
  mode?: ApplyMode;
  timestamp?: number;
  /** Set for a message another process here sent (how many hops its chain has taken). */
  hops?: number;
  /** The delivery budget of the chain a pushed message belongs to. */
  chain?: ChainBudget;
}

export interface SendOutput {
  processId: string;
  itemId: string;
  /** 0 for a dry run (not logged). */
  sequence: number;
  result: Result;
}

interface Managed {
  rec: ProcessRecord;
  vm: ContainerVm | undefined;
  lastSeq: number;
  sinceCheckpoint: number;
  recoveries: number;
  queue: Promise<unknown>;
}

/** An AO-style id: 43 characters of base64url (32 random bytes), like an Arweave transaction id. */
export function newItemId(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Runs processes: one runc container each, messages applied one at a time per process, every message
 * logged in Redis before it is applied, checkpoints every N messages. A container that dies (killed
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

  /** The user namespace containers get (undefined: none, see start()). */
  userns: UserNamespace | undefined;

  constructor(o: ProcessManagerOptions) {
    this.o = o;
    this.userns = o.userns;
    this.log = o.logger.child({ component: 'runtime-manager' });
  }

  private get checkpointsDir(): string {
    return join(this.o.dataDir, 'checkpoints');
  }

  /** Load modules (modules dir, then Redis) and rebuild every registered process. */
  async start(): Promise<{ modules: number; processes: number; moduleErrors: string[] }> {
    // 0711: a container's image root (under images/) must be reachable from its user namespace
    await ownedDir(this.o.dataDir, 0o711);
    await ownedDir(this.checkpointsDir);
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
      await this.exclusive(p, () => this.rebuild(p, p.lastSeq)).catch((err) =>
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
      await execFileP(this.o.runc ?? 'runc', ['--root', this.o.runcRoot, 'delete', '-f', id]).catch(() => undefined);
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

  private exclusive<T>(p: Managed, fn: () => Promise<T>): Promise<T> {
    const next = p.queue.then(fn, fn);
    p.queue = next.catch(() => undefined);
    return next;
  }

  private async newContainer(rec: ProcessRecord): Promise<ContainerVm> {
    const img = await this.imageFor(this.module(rec.moduleId));
    const cid = `formrt-${rec.id.slice(0, 12).replace(/[^A-Za-z0-9_-]/g, '_')}-${randomHex(3)}`;
    const container = new RuncContainer({
      id: cid,
      runcRoot: this.o.runcRoot,
      bundleDir: join(this.o.dataDir, 'containers', cid),
      rootfs: img.rootfs,
      image: img.config,
      limits: this.o.limits,
      env: [`FORM_RT_APPLY_TIMEOUT_MS=${this.o.applyTimeoutMs}`],
      logger: this.o.logger,
      ...(this.o.runc ? { runc: this.o.runc } : {}),
      ...(this.userns ? { userns: this.userns } : {}),
    });
    try {
      await container.start();
    } catch (err) {
      await container.destroy().catch(() => undefined);
      throw err;
    }
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
      await this.checkpointLocked(p, false);
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
    const run = this.exclusive(p, async (): Promise<SendOutput> => {
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
        return { processId: pid, itemId, sequence, result: await this.applyRecovering(p, input.from, meta) };
      // a process that cannot run right now (image gone, runc failing) refuses the message instead of logging it
      if (!p.vm || !p.vm.container.alive()) await this.rebuild(p, p.lastSeq);
      await this.o.store.putMessage(pid, { from: input.from, meta });
      p.lastSeq = sequence;
      const result = await this.applyRecovering(p, input.from, meta);
      await this.o.store.putResult(pid, sequence, result);
      p.sinceCheckpoint++;
      if (p.sinceCheckpoint >= this.o.checkpointEvery) await this.checkpointLocked(p, true);
      return { processId: pid, itemId, sequence, result };
    });
    // the outbox goes out after the message is done, outside its process's queue: a reply to the
    // sender then queues behind it instead of waiting on it
    return run.then((out) => {
      if (out.sequence > 0 && (out.result.messages.length > 0 || out.result.spawns.length > 0)) {
        const d = this.deliver(pid, out, input.hops ?? 0, input.chain ?? newChainBudget()).catch((err) =>
          this.log.warn({ err, processId: pid, itemId: out.itemId }, 'outbox delivery failed'),
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

  /**
   * Deliver a result's outbox on this node: messages to processes here (chained: their own outboxes
   * go out in turn, up to MAX_HOPS), spawns as new processes owned by the sender, each followed by a
   * `Spawned` notice to it. Targets on other nodes are logged and dropped (no cross-node MU yet).
   */
  private async deliver(source: string, out: SendOutput, hops: number, chain: ChainBudget): Promise<void> {
    if (this.closed) return;
    if (hops >= MAX_HOPS) {
      this.log.warn({ processId: source, itemId: out.itemId, hops }, 'message chain too long; outbox dropped');
      return;
    }
    const plan = planOutbox(source, out.itemId, out.result);
    for (const child of plan.spawns) {
      if (chain.spawns <= 0 || chain.deliveries <= 0) {
        this.log.warn({ processId: source, itemId: out.itemId }, 'chain spawn budget used up; spawn dropped');
        continue;
      }
      chain.spawns--;
      chain.deliveries--;
      if (!this.modules.has(child.module)) {
        this.log.warn({ processId: source, module: child.module }, 'Spawn names a module this node does not have');
        continue;
      }
      if (!this.procs.has(child.id))
        await this.spawn({ id: child.id, module: child.module, owner: source, data: child.data, tags: child.tags });
      plan.messages.push(spawnedNotice(source, child));
    }
    for (const m of plan.messages) {
      if (chain.deliveries <= 0) {
        this.log.warn({ processId: source, itemId: out.itemId }, 'chain delivery budget used up; message dropped');
        return;
      }
      chain.deliveries--;
      if (!this.procs.has(m.target)) {
        this.log.warn({ processId: source, target: m.target }, 'message target is not on this node; not delivered');
        continue;
      }
      const from = m.action === 'Spawned' ? (m.params.Process ?? source) : source;
      await this.send(m.target, {
        from,
        action: m.action,
        data: m.data,
        params: m.params,
        itemId: m.id,
        hops: hops + 1,
        chain,
      }).catch((err) => {
        if (isFormError(err) && err.code === 'CONFLICT') return; // delivered before
        throw err;
      });
    }
  }

  private async applyRecovering(p: Managed, from: string, meta: Meta): Promise<Result> {
    const before = meta.sequence > 0 ? meta.sequence - 1 : p.lastSeq;
    if (!p.vm || !p.vm.container.alive()) await this.rebuild(p, before);
    try {
      return await (p.vm as ContainerVm).apply(from, meta);
    } catch (err) {
      if (!isFormError(err) || err.code !== 'RUNTIME_CONTAINER') throw err;
      // the container died or wedged mid-message: rebuild up to the message before, then retry once
      this.log.warn({ processId: p.rec.id, err: err.message }, 'container failed during apply; rebuilding');
      await this.rebuild(p, before);
    }
    try {
      return await (p.vm as ContainerVm).apply(from, meta);
    } catch (err) {
      if (!isFormError(err) || err.code !== 'RUNTIME_CONTAINER') throw err;
      // the message itself kills the container (memory limit, crash): it becomes an error result
      // with no effect, and replay skips it, so one bad message cannot wedge the process
      const error = `the process crashed while applying this message (memory or CPU limit?): ${err.message}`;
      this.log.warn(
        { processId: p.rec.id, sequence: meta.sequence },
        'message crashes its container; recording it as failed',
      );
      if (meta.mode !== 'dry-run') await this.o.store.putMessage(p.rec.id, { from, meta, failed: error });
      await this.rebuild(p, before);
      return { messages: [], spawns: [], output: '', data: '', error };
    }
  }

  /** Replace the container: fresh one, last checkpoint restored, logged messages up to `upTo` replayed. */
  private async rebuild(p: Managed, upTo: number): Promise<void> {
    if (this.closed) throw new FormError('UNAVAILABLE', 'Cannot rebuild a process: the runtime is shutting down');
    const old = p.vm;
    p.vm = undefined;
    if (old) await old.close().catch(() => undefined);
    const data = await this.readCheckpoint(p.rec.checkpoint.sha256);
    const vm = await this.newContainer(p.rec);
    try {
      await vm.restore(data);
      const entries: LogEntry[] = await this.o.store.entries(p.rec.id, p.rec.checkpoint.sequence + 1, upTo);
      for (const e of entries) {
        if (e.failed) continue;
        const r = await vm.apply(e.from, { ...e.meta, mode: 'replay' });
        await this.o.store.putResult(p.rec.id, e.meta.sequence, r);
      }
      p.sinceCheckpoint = entries.length;
    } catch (err) {
      await vm.close().catch(() => undefined);
      throw err;
    }
    p.vm = vm;
    if (old) p.recoveries++;
    this.log.info(
      { processId: p.rec.id, container: vm.container.id, fromCheckpoint: p.rec.checkpoint.sequence, upTo },
      'process rebuilt',
    );
  }

  private checkContainers(): void {
    for (const p of this.procs.values()) {
      if (!p.vm || p.vm.container.alive()) continue;
      this.log.warn(
        { processId: p.rec.id, container: p.vm.container.id },
        'container died; restoring from the last checkpoint',
      );
      void this.exclusive(p, async () => {
        if (p.vm && !p.vm.container.alive()) await this.rebuild(p, p.lastSeq);
      }).catch((err) => this.log.error({ err, processId: p.rec.id }, 'cannot rebuild process'));
    }
  }

  // ---- checkpoints ----

  private async readCheckpoint(sha256: string): Promise<string> {
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new FormError(
        'RUNTIME_CHECKPOINT_INVALID',
        `Cannot use checkpoint ${JSON.stringify(sha256)}: expected 64 hex digits`,
      );
    try {
      return await readFile(join(this.checkpointsDir, `${sha256}.json`), 'utf8');
    } catch {
      throw new FormError('RUNTIME_CHECKPOINT_INVALID', `Cannot find checkpoint ${sha256} on this node`);
    }
  }

  private async saveCheckpoint(data: string): Promise<string> {
    const { sha256 } = decodeCheckpoint(data);
    const file = join(this.checkpointsDir, `${sha256}.json`);
    await writeFile(`${file}.tmp`, data);
    await rename(`${file}.tmp`, file);
    return sha256;
  }

  private async checkpointLocked(
    p: Managed,
    persist: boolean,
  ): Promise<{ sha256: string; sequence: number; size: number }> {
    if (!p.vm || !p.vm.container.alive()) await this.rebuild(p, p.lastSeq);
    const data = await (p.vm as ContainerVm).checkpoint();
    const sha256 = await this.saveCheckpoint(data);
    p.rec.checkpoint = { sha256, sequence: p.lastSeq };
    p.sinceCheckpoint = 0;
    if (persist) await this.o.store.putProcess(p.rec);
    return { sha256, sequence: p.lastSeq, size: Buffer.byteLength(data) };
  }

  /** Checkpoint now; the process resumes from here after a crash or restart. */
  checkpoint(pid: string): Promise<{ sha256: string; sequence: number; size: number }> {
    const p = this.managed(pid);
    return this.exclusive(p, () => this.checkpointLocked(p, true));
  }

  /** The checkpoint blob itself (to move a process to another node). */
  async checkpointData(pid: string, sha256: string): Promise<string> {
    this.managed(pid);
    return this.readCheckpoint(sha256);
  }

  /**
   * Restore a process to a checkpoint (by sha256 of one stored here, or the blob itself). A corrupt
   * or foreign checkpoint is refused and the process keeps its state. Later messages continue the
   * sequence; the restored state becomes the new recovery point.
   */
  restore(pid: string, ref: { sha256?: string; data?: string }): Promise<ProcessInfo> {
    const p = this.managed(pid);
    return this.exclusive(p, async () => {
      const data = ref.data ?? (ref.sha256 ? await this.readCheckpoint(ref.sha256) : undefined);
      if (data === undefined)
        throw new FormError('BAD_REQUEST', 'Cannot restore: give a checkpoint sha256 or its data');
      decodeCheckpoint(data);
      if (!p.vm || !p.vm.container.alive()) await this.rebuild(p, p.lastSeq);
      await (p.vm as ContainerVm).restore(data);
      await this.saveCheckpoint(data);
      await this.checkpointLocked(p, true);
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
    return this.exclusive(p, async () => {
      await p.vm?.close();
      p.vm = undefined;
      await this.o.store.deleteProcess(pid);
      this.procs.delete(pid);
      await rm(join(this.checkpointsDir, `${p.rec.checkpoint.sha256}.json`), { force: true });
    });
  }
}
