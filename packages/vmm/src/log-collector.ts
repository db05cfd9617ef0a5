import { createHash } from 'node:crypto';
import type { Logger } from '@formation/service';
import type { GuestAgent } from './driver.ts';
import type { LogStore, LogStream, SourceCursor } from './log-store.ts';
import type { VmView } from './types.ts';

/**
 * Guest files the collector follows. Written by the guest's `form-init` (packages/guest): the
 * entrypoint's stdout+stderr, and the logs of the guest's own services. Read over the guest agent
 * (qemu-ga `guest-file-*`), never from the serial console.
 */
export const GUEST_LOG_SOURCES: ReadonlyArray<{ src: string; stream: LogStream; path: string }> = [
  { src: 'entrypoint', stream: 'app', path: '/var/log/form/entrypoint.log' },
  { src: 'sshd', stream: 'system', path: '/var/log/form/sshd.log' },
  { src: 'qemu-ga', stream: 'system', path: '/var/log/form/qemu-ga.log' },
];

/** What the collector needs of the VM manager. */
export interface LogTarget {
  list(): VmView[];
  agent(id: string): GuestAgent;
}

export interface LogCollectorOptions {
  target: LogTarget;
  store: LogStore;
  logger: Logger;
  /** How often running VMs are read (ms); default 1000. 0: never on a timer (call `collect()`). */
  pollMs?: number | undefined;
  /** Most bytes read from one file in one round (default 64 KiB; the rest comes next round). */
  chunkBytes?: number | undefined;
  sources?: ReadonlyArray<{ src: string; stream: LogStream; path: string }>;
  now?: () => number;
}

const HEAD = 256;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Split what was read into complete lines. Returns the lines and how many bytes they used; a trailing
 * partial line is left for the next round unless the chunk was full (a line longer than a chunk).
 */
export function splitLines(data: Buffer, full: boolean): { lines: string[]; used: number } {
  const end = data.lastIndexOf(0x0a);
  if (end < 0)
    return full && data.length > 0 ? { lines: [data.toString('utf8')], used: data.length } : { lines: [], used: 0 };
  const used = full && end < data.length - 1 ? data.length : end + 1;
  const text = data.subarray(0, used).toString('utf8');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return { lines: lines.map((l) => l.replace(/\r$/, '')), used };
}

/**
 * Follows the guest log files of every running, ready VM through its guest agent and appends new lines
 * to the node's `LogStore`, stamped with the time they were read. Where it is in each file is kept on
 * disk with the logs: a restarted guest (same disk, the file kept growing) continues where it was, a
 * file that shrank or whose first bytes changed (a new disk) is read from its start. Logs of VMs that no
 * longer exist are removed.
 */
export class LogCollector {
  private readonly o: LogCollectorOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Boot (startedAt) each VM's cursors were last checked against. */
  private readonly checkedBoot = new Map<string, string>();
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly queued = new Map<string, Promise<void>>();

  constructor(o: LogCollectorOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'vm-logs' });
  }

  start(): void {
    const every = this.o.pollMs ?? 1000;
    if (every <= 0 || this.timer) return;
    // A round never throws out of the timer: an unhandled rejection would end the whole node.
    this.timer = setInterval(
      () => void this.collect().catch((err: unknown) => this.log.warn({ err }, 'log collection round failed')),
      every,
    );
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One round over every VM (rounds never overlap: a call during a round waits for it). */
  collect(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.round().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Read the new lines of one VM now (the logs route calls this before answering). One read at a time
   * per VM and at most one waiting: callers arriving while one waits share it, so a burst of requests
   * costs the guest two reads, not one per request.
   */
  collectVm(vm: VmView): Promise<void> {
    const waiting = this.queued.get(vm.id);
    if (waiting) return waiting;
    const current = this.inflight.get(vm.id);
    if (!current) return this.launch(vm);
    const next = current
      .catch(() => undefined)
      .then(() => {
        this.queued.delete(vm.id);
        return this.launch(vm);
      });
    this.queued.set(vm.id, next);
    return next;
  }

  private launch(vm: VmView): Promise<void> {
    const p = this.readVm(vm).finally(() => {
      if (this.inflight.get(vm.id) === p) this.inflight.delete(vm.id);
    });
    this.inflight.set(vm.id, p);
    return p;
  }

  private async readVm(vm: VmView): Promise<void> {
    if (vm.state !== 'running' || !vm.ready) return;
    const agent = this.o.target.agent(vm.id);
    const cursors = this.o.store.cursors(vm.id);
    const newBoot = this.checkedBoot.get(vm.id) !== (vm.startedAt ?? '');
    let changed = false;
    for (const s of this.o.sources ?? GUEST_LOG_SOURCES) {
      try {
        const before = JSON.stringify(cursors[s.src] ?? null);
        await this.follow(vm.id, agent, s, cursors, newBoot);
        if (JSON.stringify(cursors[s.src] ?? null) !== before) changed = true;
      } catch (err) {
        // Absent file (no ENTRYPOINT, service not started) or a busy agent: try again next round.
        this.log.debug({ id: vm.id, src: s.src, err: (err as Error).message }, 'guest log not read');
      }
    }
    this.checkedBoot.set(vm.id, vm.startedAt ?? '');
    if (changed) this.o.store.setCursors(vm.id, cursors);
  }

  private async round(): Promise<void> {
    const vms = this.o.target.list();
    const live = new Set(vms.map((v) => v.id));
    for (const id of this.o.store.ids()) {
      if (!live.has(id)) {
        this.o.store.remove(id);
        this.checkedBoot.delete(id);
        this.log.info({ id }, 'logs of a destroyed VM removed');
      }
    }
    for (const vm of vms) {
      try {
        await this.collectVm(vm);
      } catch (err) {
        // Destroyed or stopped between the list and the read (VM_NOT_FOUND, agent closed): next round.
        this.log.debug({ id: vm.id, err: (err as Error).message }, 'guest logs not collected');
      }
    }
  }

  private async follow(
    id: string,
    agent: GuestAgent,
    s: { src: string; stream: LogStream; path: string },
    cursors: Record<string, SourceCursor>,
    newBoot: boolean,
  ): Promise<void> {
    const chunk = this.o.chunkBytes ?? 64 * 1024;
    let c = cursors[s.src];
    if (c && newBoot) {
      // Same file as before the restart? Its first bytes say so.
      const head = await agent.readRange(s.path, 0, c.headLen);
      if (head.data.length !== c.headLen || sha(head.data) !== c.headHash) c = undefined;
    }
    // At most 4 chunks (256 KiB by default) per file per round: a chattier app falls behind, it does not
    // get to spend the node's CPU (its own file in the guest keeps the rest).
    for (let round = 0; round < 4; round++) {
      const offset = c?.offset ?? 0;
      const r = await agent.readRange(s.path, offset, chunk);
      // The agent runs in the guest: never take more than was asked for.
      const data = r.data.length > chunk ? r.data.subarray(0, chunk) : r.data;
      if (c && r.size < c.offset) {
        // Truncated or replaced: start over from its beginning.
        c = undefined;
        continue;
      }
      if (!c || c.offset === 0) {
        const head = r.data.subarray(0, Math.min(HEAD, r.data.length));
        c = { offset: 0, headLen: head.length, headHash: sha(head) };
      }
      const { lines, used } = splitLines(data, data.length >= chunk);
      const t = (this.o.now ?? Date.now)();
      if (lines.length)
        this.o.store.append(
          id,
          lines.map((line) => ({ t, stream: s.stream, src: s.src, line })),
        );
      c = { ...c, offset: offset + used };
      cursors[s.src] = c;
      if (data.length < chunk || used === 0) break;
    }
  }
}
