import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import { decodeCheckpoint } from './checkpoint.ts';

/**
 * The node's checkpoint blobs: one file per checkpoint in `dir`, named by the sha256 its own header
 * states (`decodeCheckpoint` checks it), written atomically.
 */
export class CheckpointFiles {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  private file(sha256: string): string {
    return join(this.dir, `${sha256}.json`);
  }

  /** A stored checkpoint by its sha256 (RUNTIME_CHECKPOINT_INVALID when malformed or missing). */
  async read(sha256: string): Promise<string> {
    if (!/^[0-9a-f]{64}$/.test(sha256))
      throw new FormError(
        'RUNTIME_CHECKPOINT_INVALID',
        `Cannot use checkpoint ${JSON.stringify(sha256)}: expected 64 hex digits`,
      );
    try {
      return await readFile(this.file(sha256), 'utf8');
    } catch {
      throw new FormError('RUNTIME_CHECKPOINT_INVALID', `Cannot find checkpoint ${sha256} on this node`);
    }
  }

  /** Store a checkpoint (refused when it does not decode); returns its sha256. */
  async save(data: string): Promise<string> {
    const { sha256 } = decodeCheckpoint(data);
    const file = this.file(sha256);
    await writeFile(`${file}.tmp`, data);
    await rename(`${file}.tmp`, file);
    return sha256;
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.file(sha256), { force: true });
  }
}
