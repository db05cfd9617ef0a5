import { mkdirSync } from 'node:fs';
import type { KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { VmmService } from '@formation/vmm';
import { startComponents } from './component.ts';
import { type NodeConfig, type NodeInfo, nodePaths, nodePorts } from './config.ts';
import { type DaemonComponent, type DaemonContext, need } from './daemon-context.ts';
import {
  admissionComponent,
  identityComponent,
  netnsComponent,
  p2pComponent,
  packComponent,
  registrationComponent,
  stateComponent,
  vmmComponent,
} from './daemon-core.ts';
import {
  controllerComponent,
  dnsComponent,
  extraServiceComponents,
  formnetComponent,
  pidFilesComponent,
  readyComponent,
} from './daemon-services.ts';
import { isLoopbackHost } from './replication.ts';

export interface RunningNode {
  key: KeyPair;
  store: StateStore;
  vmm: VmmService;
  info: NodeInfo;
  close(): Promise<void>;
}

/**
 * With a public address, the plain-HTTP listeners must stay on loopback: a `host` of 0.0.0.0 or of the
 * public address itself would serve the APIs in clear to other hosts (and take the TLS listeners' ports).
 */
export function checkPublicConfig(config: Pick<NodeConfig, 'host' | 'publicAddress'>): void {
  if (!config.publicAddress || isLoopbackHost(config.host)) return;
  throw new FormError(
    'CONFIG_INVALID',
    `Cannot start with --public-address ${config.publicAddress} and host ${config.host}: the plain-HTTP APIs listen on host, which must be loopback when the node is public`,
    { hint: 'Drop --host / FORM_HOST (default 127.0.0.1): other hosts reach the APIs over TLS on the public address.' },
  );
}

/** formationd's parts in start order (each reads what the earlier ones left in the context). */
export const DAEMON_COMPONENTS: readonly DaemonComponent[] = [
  pidFilesComponent,
  identityComponent,
  netnsComponent,
  stateComponent,
  p2pComponent,
  admissionComponent,
  packComponent,
  vmmComponent,
  registrationComponent,
  formnetComponent,
  dnsComponent,
  controllerComponent,
  ...extraServiceComponents,
  readyComponent,
];

/**
 * Start every service of a node in this process: state (3004), pack (3003), VMM (3002), formnet
 * (3001), DNS, and the controller that turns state into running instances. With `config.netns` the
 * instances' bridge, TAPs and WireGuard live in that namespace (created here, removed on close);
 * the APIs stay on `config.host` (127.0.0.1 by default). With `config.publicAddress` the four
 * developer APIs also listen there over TLS (certificate bound to the node key, same ports), libp2p
 * listens and is advertised there, and the node registers it as its endpoint; Redis, DNS, the runtime
 * and the dashboard never listen on it (see the README's table).
 *
 * The node is the list `DAEMON_COMPONENTS`, started in order and stopped in reverse (`component.ts`):
 * a start that fails stops what was started and names the component in the error.
 */
export async function startNode(config: NodeConfig, logger: Logger): Promise<RunningNode> {
  checkPublicConfig(config);
  const paths = nodePaths(config.dataDir);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const log = logger.child({ component: 'formationd' });
  const ctx: DaemonContext = { config, paths, ports: nodePorts(config), logger, log, parts: {}, wroteInfo: false };
  const running = await startComponents(DAEMON_COMPONENTS, ctx, {
    onStopError: (component, err) => log.warn({ err, component }, 'cleanup step failed'),
  });
  const info = ctx.info;
  if (!info) throw new Error('formationd: the ready component did not run'); // DAEMON_COMPONENTS ends with it
  return { key: need(ctx, 'key'), store: need(ctx, 'store'), vmm: need(ctx, 'vmm'), info, close: running.stop };
}
