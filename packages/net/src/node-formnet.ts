import type { Logger } from '@formation/service';
import { FORMNET_CIDR } from './ipam.ts';
import { installLeakGuard, removeLeakGuard } from './leak-guard.ts';
import { desiredPeers, type FormnetStateAdapter } from './members.ts';
import { type ReconcileResult, reconcile } from './reconcile.ts';
import { WireGuardDevice } from './wireguard.ts';

export interface NodeFormnetOptions {
  /** Interface name, unique on the host. */
  name: string;
  netns?: string | undefined;
  /** base64 WireGuard private key of this node. */
  privateKey: string;
  listenPort: number;
  /** This node's member id (its account address) and formnet address. */
  selfId: string;
  address: string;
  state: FormnetStateAdapter;
  /** Reconcile at least this often (ms), besides explicit `reconcileNow()` calls; default 5 s. 0 = never. */
  intervalMs?: number;
  implementation?: 'auto' | 'kernel' | 'userspace';
  logger: Logger;
}

export interface NodeFormnet {
  readonly device: WireGuardDevice;
  /** Apply the current membership now (call from the state store's onAccepted for formnet ops). */
  reconcileNow(): Promise<ReconcileResult>;
  stop(): Promise<void>;
}

/**
 * A node's formnet: the interface with its /32, the leak guard, and peers kept equal to the
 * membership in `state` (on demand and on a timer; reconciles never overlap).
 *
 * @example
 * const fn = await startNodeFormnet({ name: 'formnet0', privateKey, listenPort: 51820,
 *   selfId: key.address, address: '10.128.3.7', state, logger });
 * store.onAccepted((op) => { if (op.kind.startsWith('formnet.') || op.kind.startsWith('node.')) void fn.reconcileNow(); });
 */
export async function startNodeFormnet(o: NodeFormnetOptions): Promise<NodeFormnet> {
  const log = o.logger.child({ component: 'formnet' });
  const device = await WireGuardDevice.create({
    name: o.name,
    netns: o.netns,
    privateKey: o.privateKey,
    listenPort: o.listenPort,
    addresses: [`${o.address}/32`],
    implementation: o.implementation ?? 'auto',
    logger: o.logger,
  });
  let chain: Promise<unknown> = Promise.resolve();
  const reconcileNow = (): Promise<ReconcileResult> => {
    const next = chain.then(async () => reconcile(device, desiredPeers(o.selfId, await o.state.listMembers()), log));
    chain = next.catch(() => undefined);
    return next;
  };
  try {
    await installLeakGuard(o.netns);
    await reconcileNow();
  } catch (err) {
    await device.destroy().catch(() => undefined);
    throw err;
  }
  const every = o.intervalMs ?? 5_000;
  const timer =
    every > 0
      ? setInterval(() => reconcileNow().catch((err: unknown) => log.warn({ err }, 'reconcile failed')), every)
      : undefined;
  timer?.unref();
  return {
    device,
    reconcileNow,
    async stop() {
      if (timer) clearInterval(timer);
      await chain;
      await removeLeakGuard(o.netns, FORMNET_CIDR);
      await device.destroy();
    },
  };
}
