// Standby VMs (issue 22, README "Boot snapshots"): for the Formpacks a node ran last, one VM restored
// from the Formpack's boot template ahead of time and left paused, before anything instance-specific
// (no identity, no keys, no owner). The next create with the same request shape takes it: the VM is only
// resumed and released with its own identity, instead of launching QEMU and loading the template's memory
// (~1.3 s of a warm start here under TCG, several seconds under load). A standby counts in capacity(),
// is never listed, gives its room back to a VM that needs it, and is removed at close and by a VMM that
// finds one at start (it holds no state of anyone).
import type { Logger } from '@formation/service';
import type { TemplateWant } from './boot-snapshot.ts';
import type { VmRecord } from './types.ts';
import type { CreateVmRequest } from './vm-create.ts';

/**
 * The parts of a create request a standby must match, as one string, or undefined when no standby can
 * serve it (not a Formpack, a GPU, an image init, or not started at once). The name, the owner and the
 * restart policy are set when the standby is taken. Pure.
 */
export function standbyKey(req: CreateVmRequest): string | undefined {
  if (!req.formpack || req.image !== undefined || req.gpu || req.init !== undefined || req.start === false) {
    return undefined;
  }
  const r = req.resources ?? {};
  return JSON.stringify([
    req.formpack,
    r.vcpu ?? null,
    r.memMiB ?? null,
    r.diskGiB ?? null,
    req.forwardPorts ?? null,
    req.egress !== false,
    req.dataDiskMiB ?? null,
  ]);
}

/** What the pool uses of the manager. */
export interface StandbyHost {
  /**
   * Make the VM of `req` (kept out of the manager's list; `hold` gets its record as soon as it exists,
   * so its addresses and resources count) and restore it paused from its template. Throws when it
   * cannot (no room, no template); what it made is then already gone.
   */
  make(req: CreateVmRequest, hold: (rec: VmRecord) => void): Promise<VmRecord>;
  /** End a standby's process and remove its VM (never throws). */
  discard(rec: VmRecord, reason: string): Promise<void>;
  /**
   * Why a standby for `want` cannot be made now (node busy, no room, no template yet), or undefined;
   * `final`: nor later (its template will not come), so the pool stops waiting.
   */
  blocked(want: TemplateWant): Promise<{ reason: string; final: boolean } | undefined>;
}

export interface StandbyPoolOptions {
  host: StandbyHost;
  logger: Logger;
  /** Standbys kept, one per request shape, for the most recently used shapes (0 = none). */
  max: number;
  /** Look-again period while blocked (default 2000 ms) and the longest wait (default 10 min). */
  retryMs?: number | undefined;
  maxWaitMs?: number | undefined;
}

interface Wanted {
  key: string;
  req: CreateVmRequest;
  want: TemplateWant;
}

export class StandbyPool {
  private readonly o: StandbyPoolOptions;
  private readonly log: Logger;
  /** Ready standbys by shape. */
  private readonly ready = new Map<string, VmRecord>();
  /** Standbys being made (their addresses and resources are taken already). */
  private readonly making = new Set<VmRecord>();
  /** Shapes to keep a standby for, the most recent last. */
  private wanted: Wanted[] = [];
  private readonly fills = new Map<string, Promise<void>>();
  private closed = false;
  private readonly timers = new Set<{ timer: NodeJS.Timeout; end: () => void }>();

  constructor(o: StandbyPoolOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'standby' });
  }

  /** Every standby VM, ready or being made (their addresses and resources are taken). */
  records(): VmRecord[] {
    return [...this.ready.values(), ...this.making];
  }

  /** Take the ready standby of `req`'s shape, if there is one (it is no longer the pool's). */
  take(req: CreateVmRequest): VmRecord | undefined {
    const key = standbyKey(req);
    const rec = key === undefined ? undefined : this.ready.get(key);
    if (key !== undefined && rec) this.ready.delete(key);
    return rec;
  }

  /**
   * A VM of `req`'s shape was just created from the template `want`: keep a standby for that shape
   * (made once the node is quiet and the template exists). Shapes beyond `max` lose theirs.
   */
  want(req: CreateVmRequest, want: TemplateWant): void {
    const key = standbyKey(req);
    if (key === undefined || this.o.max <= 0 || this.closed) return;
    this.wanted = [...this.wanted.filter((w) => w.key !== key), { key, req: shapeOnly(req), want }];
    for (const old of this.wanted.splice(0, Math.max(0, this.wanted.length - this.o.max))) {
      const rec = this.ready.get(old.key);
      if (rec) {
        this.ready.delete(old.key);
        void this.o.host.discard(rec, 'another Formpack was used since');
      }
    }
    if (this.fills.has(key)) return;
    const fill = this.fill(key).finally(() => this.fills.delete(key));
    this.fills.set(key, fill);
  }

  private isWanted(key: string): Wanted | undefined {
    return this.closed ? undefined : this.wanted.find((w) => w.key === key);
  }

  private async fill(key: string): Promise<void> {
    const end = Date.now() + (this.o.maxWaitMs ?? 600_000);
    let said: string | undefined;
    for (;;) {
      const w = this.isWanted(key);
      if (!w || this.ready.has(key)) return;
      const why = await this.o.host.blocked(w.want);
      if (why === undefined) break;
      if (why.reason !== said) this.log.debug({ formpack: w.want.formpackId, reason: why.reason }, 'standby waits');
      said = why.reason;
      if (why.final || Date.now() > end) {
        this.log.info({ formpack: w.want.formpackId, reason: why.reason }, 'standby not made');
        return;
      }
      await this.delay(this.o.retryMs ?? 2000);
    }
    const w = this.isWanted(key);
    if (!w) return;
    const t0 = Date.now();
    let held: VmRecord | undefined;
    try {
      const rec = await this.o.host.make(w.req, (r) => {
        held = r;
        this.making.add(r);
      });
      this.making.delete(rec);
      if (!this.isWanted(key) || this.ready.has(key)) {
        await this.o.host.discard(rec, this.closed ? 'the VMM is closing' : 'no longer wanted');
        return;
      }
      this.ready.set(key, rec);
      this.log.info({ id: rec.id, formpack: w.want.formpackId, ms: Date.now() - t0 }, 'standby ready');
    } catch (err) {
      this.log.info({ formpack: w.want.formpackId, reason: (err as Error).message }, 'standby not made');
    } finally {
      if (held) this.making.delete(held);
    }
  }

  /** Give the room of one standby back (a VM needs it): the least recently wanted goes. False when none. */
  async yieldRoom(reason: string): Promise<boolean> {
    const w = this.wanted.find((x) => this.ready.has(x.key));
    const rec = w && this.ready.get(w.key);
    if (!w || !rec) return false;
    this.ready.delete(w.key);
    await this.o.host.discard(rec, reason);
    return true;
  }

  /** Resolves when no standby is being made or waited for. */
  async idle(): Promise<void> {
    while (this.fills.size > 0) await Promise.allSettled([...this.fills.values()]);
  }

  /** Stop making standbys and remove the ready ones. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) {
      clearTimeout(t.timer);
      t.end();
    }
    await this.idle();
    const left = [...this.ready.values()];
    this.ready.clear();
    for (const rec of left) await this.o.host.discard(rec, 'the VMM is closing');
  }

  private async delay(ms: number): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((end) => {
      const t = {
        timer: setTimeout(() => {
          this.timers.delete(t);
          end();
        }, ms),
        end,
      };
      this.timers.add(t);
    });
  }
}

/** The request without what a standby does not take from it (name, restart policy). */
function shapeOnly(req: CreateVmRequest): CreateVmRequest {
  const { name: _n, restartPolicy: _r, ...rest } = req;
  return { ...rest, start: false };
}
