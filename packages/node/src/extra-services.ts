import type { KeyPair } from '@formation/identity';
import type { Logger } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { VmmService } from '@formation/vmm';
import type { NodeConfig, NodePorts } from './config.ts';

/** What the optional services of a node get from formationd. */
export interface ExtraServicesContext {
  config: NodeConfig;
  ports: NodePorts;
  key: KeyPair;
  store: StateStore;
  vmm: VmmService;
  logger: Logger;
  /** Register a cleanup step (run in reverse order on close). */
  onClose(fn: () => Promise<void> | void): void;
}

/**
 * Services beside the deploy path (compute runtime, dashboard, attestation), started after the core
 * ones. Each one that cannot run on this host is skipped with a warning naming why, and the node stays up.
 */
export async function startExtraServices(_ctx: ExtraServicesContext): Promise<Record<string, string>> {
  return {};
}
