import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A revision a replica fetched and applied to its VM (rather than committing it itself). */
export interface AppliedRevision {
  revision: number;
  sha256: string;
}

/**
 * The revisions this node applied, per VM id, kept in `<dataDir>/node/applied-revisions.json` (a
 * restarted daemon still knows its replicas are at them). Without a data dir nothing is kept.
 */
export class AppliedRevisions {
  private readonly file: string | null;

  constructor(dataDir: string | undefined) {
    this.file = dataDir ? join(dataDir, 'node', 'applied-revisions.json') : null;
  }

  all(): Record<string, AppliedRevision> {
    if (!this.file || !existsSync(this.file)) return {};
    try {
      return JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, AppliedRevision>;
    } catch {
      return {};
    }
  }

  get(vmId: string): AppliedRevision | undefined {
    return this.all()[vmId];
  }

  record(vmId: string, revision: number, sha256: string): void {
    if (!this.file) return;
    const all = this.all();
    all[vmId] = { revision, sha256 };
    writeFileSync(this.file, `${JSON.stringify(all, null, 2)}\n`);
  }
}
