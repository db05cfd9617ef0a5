import { EventEmitter } from 'node:events';
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { FormError } from '@formation/interface';

/** Where a line came from: the entrypoint's output (`app`) or a guest system service (`system`). */
export type LogStream = 'app' | 'system';

/** One stored log line. `t` is when the node read it from the guest (ms); `seq` orders lines per VM. */
export interface LogEntry {
  seq: number;
  t: number;
  stream: LogStream;
  /** The guest file's short name: `entrypoint`, `sshd`, `qemu-ga`. */
  src: string;
  line: string;
}

/** Where the collector is in one guest file (see log-collector.ts). */
export interface SourceCursor {
  offset: number;
  /** sha256 of the file's first `headLen` bytes when it was first read: tells a replaced file apart. */
  headLen: number;
  headHash: string;
}

export interface LogStoreOptions {
  /** Directory holding one subdirectory per VM (0700: logs may hold secrets the app printed). */
  dir: string;
  /** Size of one log file before it rotates; two are kept per VM (default 4 MiB → at most 8 MiB). */
  maxFileBytes?: number | undefined;
  /** Longer lines are cut here (bytes of JSON-escaped text, roughly; default 16 KiB). */
  maxLineBytes?: number | undefined;
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const CURRENT = 'logs.0.jsonl';
const PREVIOUS = 'logs.1.jsonl';
const CURSORS = 'cursors.json';

/**
 * The node's per-VM log store on disk: JSON lines in two files per VM (`logs.0.jsonl` current,
 * `logs.1.jsonl` the previous one; when the current one would pass `maxFileBytes` it becomes the
 * previous one), so earlier lines survive a guest restart and a VMM restart, and a VM's logs never
 * take more than 2 × `maxFileBytes`. Removed with the VM.
 *
 * @example
 * const logs = new LogStore({ dir: '/run/form-vm/.logs' });
 * logs.append(vmId, [{ t: Date.now(), stream: 'app', src: 'entrypoint', line: 'listening on :80' }]);
 * logs.read(vmId, { since: Date.now() - 600_000 }); // → LogEntry[] oldest first
 */
export class LogStore {
  readonly dir: string;
  private readonly maxFileBytes: number;
  private readonly maxLineBytes: number;
  private readonly nextSeq = new Map<string, number>();
  private readonly events = new EventEmitter();

  constructor(o: LogStoreOptions) {
    this.dir = o.dir;
    this.maxFileBytes = o.maxFileBytes ?? 4 * 1024 * 1024;
    this.maxLineBytes = o.maxLineBytes ?? 16 * 1024;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    this.events.setMaxListeners(0);
  }

  private vmDir(id: string): string {
    if (!ID_RE.test(id)) throw new FormError('BAD_REQUEST', `Cannot use "${id}" as a VM id for logs: not a plain id`);
    return join(this.dir, id);
  }

  /** VM ids that have stored logs. */
  ids(): string[] {
    return readdirSync(this.dir).filter((n) => ID_RE.test(n));
  }

  /** Append lines (assigning `seq`); rotates first when the current file would grow past the cap. */
  append(id: string, lines: ReadonlyArray<Omit<LogEntry, 'seq'>>): LogEntry[] {
    if (lines.length === 0) return [];
    const dir = this.vmDir(id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    let seq = this.seqOf(id);
    const entries: LogEntry[] = [];
    const texts: string[] = [];
    for (const l of lines) {
      const line = l.line.length > this.maxLineBytes ? `${l.line.slice(0, this.maxLineBytes)}…[cut]` : l.line;
      const e: LogEntry = { seq: seq++, t: l.t, stream: l.stream, src: l.src, line };
      entries.push(e);
      texts.push(`${JSON.stringify(e)}\n`);
    }
    // A batch bigger than a whole file keeps only its newest lines (the cap holds; linear in the batch).
    let bytes = 0;
    let first = texts.length;
    while (first > 0 && bytes + Buffer.byteLength(texts[first - 1] as string) <= this.maxFileBytes) {
      first--;
      bytes += Buffer.byteLength(texts[first] as string);
    }
    const text = texts.slice(first).join('');
    const cur = join(dir, CURRENT);
    const size = existsSync(cur) ? statSync(cur).size : 0;
    if (size > 0 && size + bytes > this.maxFileBytes) renameSync(cur, join(dir, PREVIOUS));
    appendFileSync(cur, text, { mode: 0o600 });
    this.nextSeq.set(id, seq);
    this.events.emit(id, entries);
    return entries;
  }

  /** Stored lines, oldest first: after `afterSeq`, and/or at or after `since` (ms); the newest `limit`. */
  read(id: string, q: { since?: number; afterSeq?: number; limit?: number } = {}): LogEntry[] {
    const dir = this.vmDir(id);
    const out: LogEntry[] = [];
    for (const f of [PREVIOUS, CURRENT]) {
      const p = join(dir, f);
      if (!existsSync(p)) continue;
      for (const raw of readFileSync(p, 'utf8').split('\n')) {
        if (!raw) continue;
        let e: LogEntry;
        try {
          e = JSON.parse(raw) as LogEntry;
        } catch {
          continue; // a line cut by a crash mid-append
        }
        if (q.afterSeq !== undefined && e.seq <= q.afterSeq) continue;
        if (q.since !== undefined && e.t < q.since) continue;
        out.push(e);
      }
    }
    return q.limit !== undefined && out.length > q.limit ? out.slice(out.length - q.limit) : out;
  }

  /** Total bytes stored for a VM. */
  bytes(id: string): number {
    const dir = this.vmDir(id);
    let n = 0;
    for (const f of [PREVIOUS, CURRENT]) if (existsSync(join(dir, f))) n += statSync(join(dir, f)).size;
    return n;
  }

  /** Call `fn` with each batch appended for `id`; returns the unsubscribe function. */
  subscribe(id: string, fn: (entries: LogEntry[]) => void): () => void {
    this.events.on(id, fn);
    return () => this.events.off(id, fn);
  }

  cursors(id: string): Record<string, SourceCursor> {
    const p = join(this.vmDir(id), CURSORS);
    try {
      return JSON.parse(readFileSync(p, 'utf8')) as Record<string, SourceCursor>;
    } catch {
      return {};
    }
  }

  setCursors(id: string, cursors: Record<string, SourceCursor>): void {
    const dir = this.vmDir(id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const p = join(dir, CURSORS);
    writeFileSync(`${p}.tmp`, JSON.stringify(cursors), { mode: 0o600 });
    renameSync(`${p}.tmp`, p);
  }

  /** Forget a VM's logs (it was destroyed). */
  remove(id: string): void {
    rmSync(this.vmDir(id), { recursive: true, force: true });
    this.nextSeq.delete(id);
  }

  private seqOf(id: string): number {
    const known = this.nextSeq.get(id);
    if (known !== undefined) return known;
    // After a restart: one past the newest stored line.
    const last = this.read(id).at(-1);
    return last ? last.seq + 1 : 1;
  }
}
