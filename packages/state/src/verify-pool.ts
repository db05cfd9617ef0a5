import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { verifyOpSignature } from './op.ts';

/** One signature check: the author key, the canonical bytes and the signature. */
export interface SigCheck {
  author: string;
  bytes: string;
  sig: string;
}

const WAIT_MS = 30_000;

/**
 * Verifies signatures of big batches on worker threads while the calling thread verifies its own
 * share, then waits (synchronously, with Atomics) for the rest: `applyBatch` stays synchronous and a
 * backlog merge uses every core. Small batches, or a pool of size 0, verify inline. A worker that fails
 * or hangs is dropped and its share verified inline, so the verdicts never depend on the pool.
 */
export class VerifyPool {
  readonly size: number;
  readonly minBatch: number;
  private workers: Worker[] = [];

  constructor(size: number = Math.max(0, Math.min(3, availableParallelism() - 1)), minBatch = 128) {
    this.size = size;
    this.minBatch = minBatch;
  }

  verifyAll(checks: readonly SigCheck[]): boolean[] {
    if (this.size === 0 || checks.length < this.minBatch) return checks.map(inline);
    this.start();
    const parts = this.workers.length + 1;
    const per = Math.ceil(checks.length / parts);
    const jobs = this.workers.map((w, i) => {
      const slice = checks.slice((i + 1) * per, (i + 2) * per);
      const shared = new Int32Array(new SharedArrayBuffer(4 * (slice.length + 1)));
      w.postMessage({ checks: slice, shared });
      return { w, slice, shared, from: (i + 1) * per };
    });
    const out = checks.slice(0, per).map(inline);
    for (const job of jobs) {
      const done = Atomics.wait(job.shared, 0, 0, WAIT_MS) !== 'timed-out' || Atomics.load(job.shared, 0) === 1;
      if (!done) this.drop(job.w);
      for (let i = 0; i < job.slice.length; i++) {
        out[job.from + i] = done ? job.shared[i + 1] === 1 : inline(job.slice[i] as SigCheck);
      }
    }
    return out;
  }

  close(): void {
    for (const w of this.workers) void w.terminate();
    this.workers = [];
  }

  private start(): void {
    while (this.workers.length < this.size) {
      const w = new Worker(new URL('./verify-worker.ts', import.meta.url));
      w.unref();
      w.on('error', () => this.drop(w));
      this.workers.push(w);
    }
  }

  private drop(w: Worker): void {
    this.workers = this.workers.filter((x) => x !== w);
    void w.terminate();
  }
}

function inline(c: SigCheck): boolean {
  return verifyOpSignature(c.author, c.bytes, c.sig);
}
