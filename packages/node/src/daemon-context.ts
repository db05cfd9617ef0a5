import type { KeyPair, WireGuardKeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { StateFormnetAdapter } from '@formation/net';
import type { P2PNode } from '@formation/p2p';
import type { ApiServer, Logger, TlsIdentity } from '@formation/service';
import { listenTls } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { VmmConfig, VmmService } from '@formation/vmm';
import type { Component, StopStep } from './component.ts';
import type { NodeConfig, NodeInfo, NodePorts, nodePaths } from './config.ts';

/** What formationd's components leave for the ones after them (see daemon-core.ts, daemon-services.ts). */
export interface DaemonParts {
  key: KeyPair;
  /** The TLS identity of the public APIs (null without a public address). */
  tls: TlsIdentity | null;
  store: StateStore;
  p2p: P2PNode;
  /** Whether this node was registered before this start (read before admission). */
  registeredBefore: boolean;
  /** The node's admitted formnet slice for its instances. */
  instanceCidr: string;
  wg: WireGuardKeyPair;
  /** The host other hosts reach this node at. */
  advertise: string;
  vmm: VmmService;
  vmmConfig: VmmConfig;
  formnetState: StateFormnetAdapter;
  /** This node's formnet address. */
  formnetAddress: string;
}

/** The shared context of formationd's components: fixed inputs, then the parts started so far. */
export interface DaemonContext {
  config: NodeConfig;
  paths: ReturnType<typeof nodePaths>;
  ports: NodePorts;
  logger: Logger;
  /** formationd's own logger (`component: formationd`). */
  log: Logger;
  parts: Partial<DaemonParts>;
  /** Set by the controller: wakes a suspended replica (the VMM's onWake calls it). */
  wakeReplica?: (vmId: string) => Promise<void>;
  /** Set once the pid and info files are written (so close removes them, and only then). */
  wroteInfo: boolean;
  /** What the info file says, once written (the `ready` component). */
  info?: NodeInfo & { nodeKey: string; tlsFingerprint: string | null };
}

export type DaemonComponent = Component<DaemonContext>;

/** A part an earlier component started (a programming error when the order is wrong). */
export function need<K extends keyof DaemonParts>(ctx: DaemonContext, k: K): DaemonParts[K] {
  const v = ctx.parts[k];
  if (v === undefined) throw new Error(`formationd: "${k}" is needed before the component that makes it started`);
  return v as DaemonParts[K];
}

/** Serve `app` on host:port, with an UNAVAILABLE error that says which API and why. */
export async function listen(app: ApiServer, host: string, port: number, name: string): Promise<void> {
  try {
    await app.listen({ host, port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormError(
      'UNAVAILABLE',
      `Cannot start the ${name} API on ${host}:${port}: ${code === 'EADDRINUSE' ? 'the port is in use' : (err as Error).message}`,
      {
        hint: code === 'EADDRINUSE' ? 'Is another node running (`form node status`)? Or use --port-offset.' : undefined,
      },
    );
  }
}

/**
 * Serve `app` on loopback (`config.host`) and, with a public address, over TLS there too (same port);
 * `close` (what stops the service) is registered with `onStop` once the loopback listener is open, then
 * the TLS listener's close.
 */
export async function listenApi(
  ctx: DaemonContext,
  onStop: (step: StopStep) => void,
  app: ApiServer,
  port: number,
  name: string,
  close: StopStep,
): Promise<void> {
  await listen(app, ctx.config.host, port, name);
  onStop(close);
  const tls = ctx.parts.tls;
  if (!tls || !ctx.config.publicAddress) return;
  const l = await listenTls(app, { host: ctx.config.publicAddress, port, key: tls.key, cert: tls.cert, name });
  onStop(() => l.close());
}
