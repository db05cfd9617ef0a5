import { FormError, isFormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { CheckpointFiles } from './checkpoint-files.ts';
import type { ContainerVm } from './container-vm.ts';
import type { LogEntry, ProcessRecord, RuntimeStore } from './runtime-store.ts';
import type { Meta, Result } from './types.ts';

// One process's container over its life: rebuilt from the last checkpoint with the logged messages
// replayed, a message applied with one rebuild-and-retry when the container fails, checkpoints taken.
// Every function here runs inside the process's queue (`exclusive`).

/** A registered process and the container that runs it now (undefined while it has none). */
export interface Managed {
  rec: ProcessRecord;
  vm: ContainerVm | undefined;
  lastSeq: number;
  sinceCheckpoint: number;
  recoveries: number;
  queue: Promise<unknown>;
}

/** What these functions use of the process manager. */
export interface ManagedContext {
  readonly store: RuntimeStore;
  readonly log: Logger;
  readonly checkpoints: CheckpointFiles;
  /** A started container for the process's module (not yet restored). */
  newContainer(rec: ProcessRecord): Promise<ContainerVm>;
  /** True once the manager shuts down: nothing is rebuilt any more. */
  isClosed(): boolean;
}

/** Run `fn` after everything queued on `p` (one message, checkpoint or rebuild at a time per process). */
export function exclusive<T>(p: Managed, fn: () => Promise<T>): Promise<T> {
  const next = p.queue.then(fn, fn);
  p.queue = next.catch(() => undefined);
  return next;
}

/** Replace the container: fresh one, last checkpoint restored, logged messages up to `upTo` replayed. */
export async function rebuild(ctx: ManagedContext, p: Managed, upTo: number): Promise<void> {
  if (ctx.isClosed()) throw new FormError('UNAVAILABLE', 'Cannot rebuild a process: the runtime is shutting down');
  const old = p.vm;
  p.vm = undefined;
  if (old) await old.close().catch(() => undefined);
  const data = await ctx.checkpoints.read(p.rec.checkpoint.sha256);
  const vm = await ctx.newContainer(p.rec);
  try {
    await vm.restore(data);
    const entries: LogEntry[] = await ctx.store.entries(p.rec.id, p.rec.checkpoint.sequence + 1, upTo);
    for (const e of entries) {
      if (e.failed) continue;
      const r = await vm.apply(e.from, { ...e.meta, mode: 'replay' });
      await ctx.store.putResult(p.rec.id, e.meta.sequence, r);
    }
    p.sinceCheckpoint = entries.length;
  } catch (err) {
    await vm.close().catch(() => undefined);
    throw err;
  }
  p.vm = vm;
  if (old) p.recoveries++;
  ctx.log.info(
    { processId: p.rec.id, container: vm.container.id, fromCheckpoint: p.rec.checkpoint.sequence, upTo },
    'process rebuilt',
  );
}

/** Apply a message; a container that fails is rebuilt and the message retried once, then recorded as failed. */
export async function applyRecovering(ctx: ManagedContext, p: Managed, from: string, meta: Meta): Promise<Result> {
  const before = meta.sequence > 0 ? meta.sequence - 1 : p.lastSeq;
  if (!p.vm || !p.vm.container.alive()) await rebuild(ctx, p, before);
  try {
    return await (p.vm as ContainerVm).apply(from, meta);
  } catch (err) {
    if (!isFormError(err) || err.code !== 'RUNTIME_CONTAINER') throw err;
    // the container died or wedged mid-message: rebuild up to the message before, then retry once
    ctx.log.warn({ processId: p.rec.id, err: err.message }, 'container failed during apply; rebuilding');
    await rebuild(ctx, p, before);
  }
  try {
    return await (p.vm as ContainerVm).apply(from, meta);
  } catch (err) {
    if (!isFormError(err) || err.code !== 'RUNTIME_CONTAINER') throw err;
    // the message itself kills the container (memory limit, crash): it becomes an error result
    // with no effect, and replay skips it, so one bad message cannot wedge the process
    const error = `the process crashed while applying this message (memory or CPU limit?): ${err.message}`;
    ctx.log.warn(
      { processId: p.rec.id, sequence: meta.sequence },
      'message crashes its container; recording it as failed',
    );
    if (meta.mode !== 'dry-run') await ctx.store.putMessage(p.rec.id, { from, meta, failed: error });
    await rebuild(ctx, p, before);
    return { messages: [], spawns: [], output: '', data: '', error };
  }
}

/** Checkpoint the process now (its record saved when `persist`); it resumes from here after a crash. */
export async function checkpointLocked(
  ctx: ManagedContext,
  p: Managed,
  persist: boolean,
): Promise<{ sha256: string; sequence: number; size: number }> {
  if (!p.vm || !p.vm.container.alive()) await rebuild(ctx, p, p.lastSeq);
  const data = await (p.vm as ContainerVm).checkpoint();
  const sha256 = await ctx.checkpoints.save(data);
  p.rec.checkpoint = { sha256, sequence: p.lastSeq };
  p.sinceCheckpoint = 0;
  if (persist) await ctx.store.putProcess(p.rec);
  return { sha256, sequence: p.lastSeq, size: Buffer.byteLength(data) };
}
