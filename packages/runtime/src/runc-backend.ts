import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from '@formation/service';
import type { Container, ContainerBackend, ContainerSpec } from './container-backend.ts';
import { RuncContainer } from './runc.ts';

const run = promisify(execFile);

export interface RuncBackendOptions {
  /** runc state directory (`runc --root`). */
  runcRoot: string;
  /** runc binary (default `runc` on PATH). */
  runc?: string;
  logger: Logger;
}

/**
 * The real backend: one runc container per process (cgroup v1, seccomp, empty network namespace).
 *
 * @example
 * const backend = new RuncBackend({ runcRoot: '/run/formrt', logger });
 * const c = await backend.start(spec); // RuncContainer, answering on its socket
 */
export class RuncBackend implements ContainerBackend {
  readonly name = 'runc';
  private readonly o: RuncBackendOptions;

  constructor(o: RuncBackendOptions) {
    this.o = o;
  }

  async start(spec: ContainerSpec): Promise<Container> {
    const container = new RuncContainer({
      id: spec.id,
      runcRoot: this.o.runcRoot,
      bundleDir: spec.bundleDir,
      rootfs: spec.rootfs,
      image: spec.image,
      limits: spec.limits,
      env: spec.env,
      logger: this.o.logger,
      ...(this.o.runc ? { runc: this.o.runc } : {}),
      ...(spec.userns ? { userns: spec.userns } : {}),
    });
    try {
      await container.start();
    } catch (err) {
      await container.destroy().catch(() => undefined);
      throw err;
    }
    return container;
  }

  async removeStale(id: string): Promise<void> {
    await run(this.o.runc ?? 'runc', ['--root', this.o.runcRoot, 'delete', '-f', id]).catch(() => undefined);
  }
}
