import { rm } from 'node:fs/promises';
import { FormError } from '@formation/interface';
import { decodeCheckpoint, encodeCheckpoint, packWorkspace, replaceContents, unpackWorkspace } from './checkpoint.ts';
import type { Container } from './container-backend.ts';
import { chownTree } from './runc.ts';
import type { Meta, Result, Vm } from './types.ts';

/** What the manager passes when a process is first created in a container. */
export interface SpawnInput {
  processId: string;
  owner: string;
  /** Process code (for the JS runtime: JavaScript registering handlers). */
  data: string;
  tags: Array<{ name: string; value: string }>;
  /** The node's URL (VMDocker's cu_addr). */
  cuAddr: string;
  /** The process's module (the Lua runtime shows it to the process as `ao.env.Module`). */
  module?: { id: string; tags: Array<{ name: string; value: string }> };
}

/**
 * A `Vm` backed by one runtime container, speaking the VMDocker runtime container protocol
 * (`/vmm/spawn`, `/vmm/apply`, `/vmm/checkpoint`, `/vmm/restore`) over the container's socket
 * (any `ContainerBackend`: runc, or the in-memory fake in tests).
 * Transport failures throw RUNTIME_CONTAINER (the manager recovers); handler failures are results.
 */
export class ContainerVm implements Vm {
  readonly container: Container;
  readonly processId: string;
  private readonly timeoutMs: number;

  constructor(container: Container, processId: string, applyTimeoutMs: number) {
    this.container = container;
    this.processId = processId;
    // the server enforces the handler time limit itself; this only catches a wedged container
    this.timeoutMs = applyTimeoutMs + 5000;
  }

  private async call(path: string, body: unknown): Promise<Record<string, unknown>> {
    let res: { status: number; body: Record<string, unknown> };
    try {
      res = await this.container.call(path, body, this.timeoutMs);
    } catch (err) {
      throw new FormError('RUNTIME_CONTAINER', `Cannot reach process ${this.processId}: ${(err as Error).message}`, {
        details: { alive: this.container.alive() },
        cause: err,
      });
    }
    if (res.status !== 200) {
      const msg = String(res.body.error ?? `HTTP ${res.status}`);
      throw new FormError(res.status >= 500 ? 'RUNTIME_CONTAINER' : 'BAD_REQUEST', `Process ${this.processId}: ${msg}`);
    }
    return res.body;
  }

  async spawn(input: SpawnInput): Promise<void> {
    await this.call('/vmm/spawn', {
      pid: input.processId,
      owner: input.owner,
      cu_addr: input.cuAddr,
      data: input.data,
      tags: input.tags,
      ...(input.module ? { module: input.module.id, module_tags: input.module.tags } : {}),
    });
  }

  async apply(from: string, meta: Meta): Promise<Result> {
    const body = await this.call('/vmm/apply', { from, meta, params: meta.params });
    try {
      return JSON.parse(String(body.result)) as Result;
    } catch {
      throw new FormError('RUNTIME_CONTAINER', `Process ${this.processId}: runtime returned an unreadable result`);
    }
  }

  async checkpoint(): Promise<string> {
    const body = await this.call('/vmm/checkpoint', {});
    return encodeCheckpoint(this.processId, String(body.state), await packWorkspace(this.container.workspaceDir));
  }

  /** Verify everything first (hash, workspace archive, the runtime's own check); only then replace. */
  async restore(data: string): Promise<void> {
    const c = decodeCheckpoint(data);
    if (c.processId !== this.processId)
      throw new FormError(
        'RUNTIME_CHECKPOINT_INVALID',
        `Cannot restore process ${this.processId} from a checkpoint of ${c.processId}`,
      );
    const staged = `${this.container.workspaceDir}.restore`;
    await rm(staged, { recursive: true, force: true });
    await unpackWorkspace(c.workspace, staged);
    try {
      try {
        await this.call('/vmm/restore', { state: c.state });
      } catch (err) {
        if ((err as FormError).code === 'BAD_REQUEST')
          throw new FormError('RUNTIME_CHECKPOINT_INVALID', `Cannot restore: ${(err as Error).message}`);
        throw err;
      }
      await replaceContents(this.container.workspaceDir, staged);
      await chownTree(this.container.workspaceDir, this.container.uid);
    } finally {
      await rm(staged, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    await this.container.destroy();
  }
}
