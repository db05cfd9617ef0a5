import type { Logger } from '@formation/service';
import type { JoinResponse } from './formnet-service.ts';
import { installLeakGuard } from './leak-guard.ts';
import { reconcile } from './reconcile.ts';
import { WireGuardDevice } from './wireguard.ts';

export interface MemberInterfaceOptions {
  /** Interface name, unique on the host. */
  name: string;
  netns?: string | undefined;
  /** base64 WireGuard private key whose public key was sent in the join request. */
  privateKey: string;
  listenPort?: number | undefined;
  join: JoinResponse;
  implementation?: 'auto' | 'kernel' | 'userspace';
  logger: Logger;
}

/**
 * Bring up a member's formnet interface from a join answer: the WireGuard device with its /32, every
 * peer and its routes, and the leak guard. Later membership changes go through `reconcile`.
 *
 * @example
 * const j = await requestJoin(url, key, { wgPublicKey: wg.publicKey });
 * const dev = await bringUpMember({ name: 'formnet0', privateKey: wg.privateKey, join: j, logger });
 */
export async function bringUpMember(o: MemberInterfaceOptions): Promise<WireGuardDevice> {
  const dev = await WireGuardDevice.create({
    name: o.name,
    netns: o.netns,
    privateKey: o.privateKey,
    listenPort: o.listenPort,
    addresses: [o.join.interface.address],
    mtu: o.join.interface.mtu,
    implementation: o.implementation ?? 'auto',
    logger: o.logger,
  });
  try {
    await installLeakGuard(o.netns, o.join.interface.network);
    await reconcile(dev, o.join.peers, o.logger);
  } catch (err) {
    await dev.destroy().catch(() => undefined);
    throw err;
  }
  return dev;
}
