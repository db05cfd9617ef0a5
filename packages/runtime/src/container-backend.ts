import type { ImageRunConfig } from './docker-archive.ts';
import type { ContainerLimits, UserNamespace } from './runc.ts';

// The seam between the process manager and whatever runs a process's runtime server (issue 21):
// exactly what manager.ts, managed-process.ts and container-vm.ts use of a container. runc is the real
// backend (runc-backend.ts); fake-backend.ts runs the protocol in memory for unit tests.

/** What a backend needs to start one container for a process. */
export interface ContainerSpec {
  /** Container name (unique on this host; `formrt-<process>-<random>`). */
  id: string;
  /** Where the container keeps its files (socket dir, workspace, log); removed by destroy(). */
  bundleDir: string;
  /** Unpacked image root filesystem and its run config. */
  rootfs: string;
  image: ImageRunConfig;
  limits: ContainerLimits;
  env: string[];
  /** User namespace for the container (runc); a backend without one ignores it. */
  userns?: UserNamespace;
}

/** A started container whose runtime server answers the VMDocker protocol (`/vmm/*`). */
export interface Container {
  readonly id: string;
  /** Host directory the process sees as its workspace (packed into checkpoints). */
  readonly workspaceDir: string;
  /** Host uid that owns the workspace (files restored into it are chowned to it). */
  readonly uid: number;
  /** Host PID of the container's init, when it has one. */
  readonly pid: number | undefined;
  /** Whether the container still runs (false once it died or was destroyed). */
  alive(): boolean;
  /** POST a JSON body to the runtime server; rejects on transport failure (dead, wedged, timed out). */
  call(path: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Kill the container and remove its files (idempotent). */
  destroy(): Promise<void>;
}

/**
 * Starts containers for the process manager.
 *
 * @example
 * const c = await backend.start({ id, bundleDir, rootfs, image, limits, env: [] });
 * const { status } = await c.call('/vmm/health', {}, 2000); // 200
 * await c.destroy();
 */
export interface ContainerBackend {
  /** Short name for logs and errors (`runc`, `fake`). */
  readonly name: string;
  /**
   * Start a container; resolves when its runtime server answers. A container that fails to start is
   * destroyed before the error (RUNTIME_CONTAINER) is thrown.
   */
  start(spec: ContainerSpec): Promise<Container>;
  /** Remove a container a previous run left behind (crash, SIGKILL); no error when it is gone. */
  removeStale(id: string): Promise<void>;
}
