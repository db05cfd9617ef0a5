import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmRecord } from './types.ts';

/**
 * VM records persisted as one JSON file per VM (`<dir>/<id>/vm.json`), written atomically
 * (temp file + rename), so a crash never leaves a half-written record.
 */
export class VmStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true });
  }

  vmDir(id: string): string {
    return join(this.dir, id);
  }

  save(rec: VmRecord): void {
    const d = this.vmDir(rec.id);
    mkdirSync(d, { recursive: true });
    const tmp = join(d, `.vm.json.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(rec, null, 1)}\n`);
    renameSync(tmp, join(d, 'vm.json'));
  }

  /** All readable records; unreadable ones are returned in `bad` (never silently dropped). */
  loadAll(): { records: VmRecord[]; bad: Array<{ id: string; error: string }> } {
    const records: VmRecord[] = [];
    const bad: Array<{ id: string; error: string }> = [];
    for (const id of readdirSync(this.dir)) {
      try {
        records.push(JSON.parse(readFileSync(join(this.dir, id, 'vm.json'), 'utf8')) as VmRecord);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') bad.push({ id, error: e.message });
      }
    }
    return { records, bad };
  }

  remove(id: string): void {
    rmSync(this.vmDir(id), { recursive: true, force: true });
  }
}
