import { FormError } from '@formation/interface';

export interface BuildQueueOptions {
  /** Builds that run at once (2 cores are shared by everything on a node). */
  slots: number;
  /** Builds waiting on the whole node. */
  maxQueued: number;
  /** Builds one owner may have waiting. */
  maxQueuedPerOwner: number;
}

export const DEFAULT_BUILD_QUEUE: BuildQueueOptions = { slots: 1, maxQueued: 64, maxQueuedPerOwner: 8 };

interface Waiting {
  owner: string;
  start: () => void;
}

/**
 * The node's build queue: at most `slots` builds run; the waiting ones are bounded (per owner and in
 * all) and served fairly by owner: when a slot frees, the owner served longest ago (or never) goes
 * next, so one owner's many queued builds never hold back another owner's first one. Order within
 * one owner is first-in first-out. Time limits are the Builder's (a build that never ends cannot hold a
 * slot past buildTimeoutMs).
 *
 * @example
 * const q = new BuildQueue({ slots: 1, maxQueued: 64, maxQueuedPerOwner: 8 });
 * const result = await q.run(signer.address, () => builder.build(req));
 */
export class BuildQueue {
  readonly opts: BuildQueueOptions;
  private running = 0;
  private readonly waiting = new Map<string, Waiting[]>();
  private readonly lastServed = new Map<string, number>();
  private readonly active = new Map<string, number>();
  private tick = 0;

  constructor(opts: Partial<BuildQueueOptions> = {}) {
    this.opts = { ...DEFAULT_BUILD_QUEUE, ...opts };
  }

  /** Builds running now. */
  get runningCount(): number {
    return this.running;
  }

  /** Builds waiting now (all owners, or one). */
  queuedCount(owner?: string): number {
    if (owner !== undefined) return this.waiting.get(owner)?.length ?? 0;
    let n = 0;
    for (const w of this.waiting.values()) n += w.length;
    return n;
  }

  /**
   * Reserve a place (throws PACK_QUEUE_FULL at once when there is none), then run `fn` when the
   * owner's turn comes. `onStart` is called when it leaves the queue.
   */
  run<T>(owner: string, fn: () => Promise<T>, onStart?: () => void): Promise<T> {
    this.admit(owner);
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        onStart?.();
        fn()
          .then(resolve, reject)
          .finally(() => this.done(owner));
      };
      const list = this.waiting.get(owner) ?? [];
      list.push({ owner, start });
      this.waiting.set(owner, list);
      this.active.set(owner, (this.active.get(owner) ?? 0) + 1);
      this.pump();
    });
  }

  private admit(owner: string): void {
    if (this.queuedCount(owner) >= this.opts.maxQueuedPerOwner) {
      throw new FormError(
        'PACK_QUEUE_FULL',
        `Cannot queue the build: ${owner} already has ${this.opts.maxQueuedPerOwner} builds waiting on this node`,
        { hint: 'Wait for some of them to finish (follow them with `form pack status`), then send it again.' },
      );
    }
    if (this.running >= this.opts.slots && this.queuedCount() >= this.opts.maxQueued) {
      throw new FormError(
        'PACK_QUEUE_FULL',
        `Cannot queue the build: ${this.opts.maxQueued} builds are already waiting on this node`,
        { hint: 'Try again later, or build on another node.' },
      );
    }
  }

  private pump(): void {
    while (this.running < this.opts.slots) {
      let pick: string | undefined;
      let best = Number.POSITIVE_INFINITY;
      for (const [owner, list] of this.waiting) {
        if (list.length === 0) continue;
        const served = this.lastServed.get(owner) ?? -1;
        if (served < best) {
          best = served;
          pick = owner;
        }
      }
      if (pick === undefined) return;
      const list = this.waiting.get(pick)!;
      const next = list.shift()!;
      if (list.length === 0) this.waiting.delete(pick);
      this.lastServed.set(pick, ++this.tick);
      this.running++;
      next.start();
    }
  }

  private done(owner: string): void {
    this.running--;
    const left = (this.active.get(owner) ?? 1) - 1;
    if (left > 0) this.active.set(owner, left);
    else {
      // An owner with nothing queued or running is forgotten (the map stays bounded by live owners).
      this.active.delete(owner);
      this.lastServed.delete(owner);
    }
    this.pump();
  }
}
