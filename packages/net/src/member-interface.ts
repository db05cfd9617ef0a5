import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import type { JoinResponse } from './formnet-service.ts';
import { cidrContains, FORMNET_CIDR, formatCidr, parseCidr } from './ipam.ts';
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
 * What is wrong with the interface settings of a join answer, or undefined. A member applies them to its
 * own namespace (a laptop's), so a node may not hand out anything but a /32 inside formnet, the formnet
 * range as the leak guard (`unreachable 0.0.0.0/0` would take the default route) and an MTU a link can
 * have. Pure.
 */
export function joinAnswerProblem(j: JoinResponse): string | undefined {
  const i = j?.interface;
  if (!i || typeof i !== 'object') return 'it has no interface settings';
  let addr: string;
  try {
    if (typeof i.address !== 'string' || !/^\d+\.\d+\.\d+\.\d+\/32$/.test(i.address)) throw new Error();
    addr = formatCidr(parseCidr(i.address));
  } catch {
    return `interface address ${JSON.stringify(i.address)} is not a.b.c.d/32`;
  }
  if (!cidrContains(FORMNET_CIDR, addr)) return `interface address ${addr} is outside ${FORMNET_CIDR}`;
  if (typeof j.address !== 'string' || `${j.address}/32` !== addr) return 'address and interface address differ';
  if (i.network !== FORMNET_CIDR) return `network ${JSON.stringify(i.network)} is not ${FORMNET_CIDR}`;
  if (!Number.isInteger(i.mtu) || i.mtu < 1280 || i.mtu > 9000) return `MTU ${JSON.stringify(i.mtu)} is not 1280..9000`;
  return undefined;
}

/** Throw NET_BAD_PEER when a join answer's interface settings are not safe to apply here. */
export function assertJoinAnswer(j: JoinResponse): void {
  const why = joinAnswerProblem(j);
  if (why) {
    throw new FormError('NET_BAD_PEER', `Cannot use the node's join answer: ${why}`, {
      hint: 'Nothing was changed on this machine. The node is misconfigured or hostile: join through another node.',
    });
  }
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
  assertJoinAnswer(o.join);
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
