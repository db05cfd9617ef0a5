import { randomBytes } from 'node:crypto';
import type { Logger } from '@formation/service';
import type { ContainerBackend } from './container-backend.ts';
import type { ImageStore } from './image-store.ts';
import type { ChainBudget } from './outbox.ts';
import type { ContainerLimits, UserNamespace } from './runc.ts';
import type { RuntimeStore } from './runtime-store.ts';
import type { ApplyMode, Result } from './types.ts';

// What the process manager takes and shows (its options, a process as the API shows it, a message in
// and its outcome), apart from the manager so the API client and routes can name them.

export interface ProcessManagerOptions {
  store: RuntimeStore;
  images: ImageStore;
  logger: Logger;
  /** Holds containers/ (bundles, workspaces) and checkpoints/ (content-addressed blobs). */
  dataDir: string;
  modulesDir?: string;
  runcRoot: string;
  runc?: string;
  /** What runs the containers (default: runc with runcRoot/runc above; tests pass a FakeBackend). */
  backend?: ContainerBackend;
  limits: ContainerLimits;
  applyTimeoutMs: number;
  /** Take a checkpoint every N applied messages (bounds replay after a crash). */
  checkpointEvery: number;
  /** How often to look for containers that died; 0 disables the monitor. */
  monitorIntervalMs: number;
  nodeId: string;
  nodeUrl: string;
  /**
   * Run containers in a user namespace (container root = this unprivileged host range). Used only
   * when every directory above the image store lets other users pass (x), as the namespace's root
   * must reach the image root; otherwise a warning says why not.
   */
  userns?: UserNamespace;
}

/** What the API shows about a process. */
export interface ProcessInfo {
  id: string;
  moduleId: string;
  owner: string;
  /** The spawn's tags (AO: Name, Data-Protocol, …). */
  tags: Array<{ name: string; value: string }>;
  createdAt: string;
  lastSequence: number;
  checkpoint: { sha256: string; sequence: number };
  container: { id: string; hostPid: number | null; alive: boolean } | null;
  /** How often the process was rebuilt from its checkpoint after its container died. */
  recoveries: number;
}

export interface SendInput {
  from: string;
  action: string;
  data?: string;
  params?: Record<string, string>;
  itemId?: string;
  mode?: ApplyMode;
  timestamp?: number;
  /** Set for a message another process here sent (how many hops its chain has taken). */
  hops?: number;
  /** The delivery budget of the chain a pushed message belongs to. */
  chain?: ChainBudget;
}

export interface SendOutput {
  processId: string;
  itemId: string;
  /** 0 for a dry run (not logged). */
  sequence: number;
  result: Result;
}

/** An AO-style id: 43 characters of base64url (32 random bytes), like an Arweave transaction id. */
export function newItemId(): string {
  return randomBytes(32).toString('base64url');
}
