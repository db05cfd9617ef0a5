import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '@formation/identity';
import { FormError } from '@formation/interface';
import * as tar from 'tar';
import { tarDirectory } from './docker-archive.ts';

export const CHECKPOINT_FORMAT = 'formation-runtime-checkpoint/1';

/** A decoded checkpoint: the process state blob (from the runtime server) and its workspace archive. */
export interface Checkpoint {
  format: typeof CHECKPOINT_FORMAT;
  processId: string;
  /** Opaque process state from the runtime container. */
  state: string;
  /** Base64 of a reproducible tar.gz of the process workspace. */
  workspace: string;
  /** sha256 over `state`, a newline and `workspace`: the checkpoint's id. */
  sha256: string;
}

/** The content hash a checkpoint must carry. */
export function checkpointHash(state: string, workspace: string): string {
  return sha256Hex(`${state}\n${workspace}`);
}

/** Encode a checkpoint as the string `Vm.checkpoint()` returns. */
export function encodeCheckpoint(processId: string, state: string, workspace: string): string {
  const c: Checkpoint = {
    format: CHECKPOINT_FORMAT,
    processId,
    state,
    workspace,
    sha256: checkpointHash(state, workspace),
  };
  return JSON.stringify(c);
}

/** Decode and verify a checkpoint string; anything malformed or altered is refused. */
export function decodeCheckpoint(data: string): Checkpoint {
  let c: Partial<Checkpoint>;
  try {
    c = JSON.parse(data) as Partial<Checkpoint>;
  } catch {
    throw new FormError(
      'RUNTIME_CHECKPOINT_INVALID',
      'Cannot restore: the checkpoint is not valid JSON (truncated or corrupt)',
    );
  }
  if (
    c?.format !== CHECKPOINT_FORMAT ||
    typeof c.state !== 'string' ||
    typeof c.workspace !== 'string' ||
    typeof c.sha256 !== 'string' ||
    typeof c.processId !== 'string'
  )
    throw new FormError('RUNTIME_CHECKPOINT_INVALID', `Cannot restore: not a ${CHECKPOINT_FORMAT} checkpoint`);
  const actual = checkpointHash(c.state, c.workspace);
  if (actual !== c.sha256)
    throw new FormError(
      'RUNTIME_CHECKPOINT_INVALID',
      `Cannot restore: checkpoint content hashes to ${actual.slice(0, 16)}…, it says ${c.sha256.slice(0, 16)}… (corrupt)`,
      {
        hint: 'Restore from another checkpoint; the process keeps its current state.',
      },
    );
  return c as Checkpoint;
}

/** Archive a workspace directory reproducibly as base64 tar.gz. */
export async function packWorkspace(dir: string): Promise<string> {
  const tmp = await mkdtemp(join(tmpdir(), 'formation-runtime-ws-'));
  try {
    const file = join(tmp, 'ws.tar.gz');
    await tarDirectory(dir, file, { gzip: true });
    return (await readFile(file)).toString('base64');
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Unpack a workspace archive into a new directory `into` (which must not exist); refuses bad archives. */
export async function unpackWorkspace(workspace: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  const tmp = await mkdtemp(join(tmpdir(), 'formation-runtime-ws-'));
  try {
    const file = join(tmp, 'ws.tar.gz');
    await import('node:fs/promises').then((f) => f.writeFile(file, Buffer.from(workspace, 'base64')));
    await tar.x({
      file,
      cwd: into,
      strict: true,
      preserveOwner: false,
      filter: (_p, e) => ['File', 'OldFile', 'Directory'].includes((e as { type?: string }).type ?? 'File'),
    });
  } catch (err) {
    await rm(into, { recursive: true, force: true });
    throw new FormError(
      'RUNTIME_CHECKPOINT_INVALID',
      `Cannot restore: the workspace archive does not unpack (${(err as Error).message})`,
    );
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Replace the contents of `dir` with those of `from` (kept as a directory: it may be a bind mount). */
export async function replaceContents(dir: string, from: string): Promise<void> {
  for (const n of await readdir(dir)) await rm(join(dir, n), { recursive: true, force: true });
  const { rename } = await import('node:fs/promises');
  for (const n of await readdir(from)) await rename(join(from, n), join(dir, n));
}
