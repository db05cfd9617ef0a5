import { run, tryRun } from './exec.ts';

/**
 * Network namespace plumbing for devnets and tests: namespaces joined by veth pairs to a bridge that
 * lives in its own namespace (nothing touches the host's interfaces).
 */
export async function createNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
  await run('ip', ['link', 'set', 'lo', 'up'], { netns: name });
}

export async function deleteNetns(name: string): Promise<void> {
  await tryRun('ip', ['netns', 'del', name]);
}

export async function listNetns(): Promise<string[]> {
  const out = await run('ip', ['-j', 'netns', 'list']).catch(() => '[]');
  return (JSON.parse(out || '[]') as { name: string }[]).map((n) => n.name);
}

/** A bridge namespace with bridge `bridge` up inside it. (Never name a bridge `br`: iproute2 parses it as `broadcast`.) */
export async function createBridgeNetns(netns: string, bridge: string): Promise<void> {
  await createNetns(netns);
  await run('ip', ['link', 'add', bridge, 'type', 'bridge'], { netns });
  await run('ip', ['link', 'set', bridge, 'up'], { netns });
}

export interface VethToBridge {
  bridgeNetns: string;
  bridge: string;
  netns: string;
  /** Host-unique names for the two ends while they are created in the root namespace. */
  bridgeSide: string;
  tempName: string;
  /** Name inside `netns`, default eth0. */
  ifname?: string;
  /** Address with prefix inside `netns`, e.g. 192.168.77.2/24. */
  address: string;
}

/** Join `netns` to the bridge by a veth pair (created in the root namespace, then moved: creating in place fails with this iproute2). */
export async function connectToBridge(o: VethToBridge): Promise<void> {
  const ifname = o.ifname ?? 'eth0';
  await run('ip', ['link', 'add', o.bridgeSide, 'type', 'veth', 'peer', 'name', o.tempName]);
  await run('ip', ['link', 'set', o.bridgeSide, 'netns', o.bridgeNetns]);
  await run('ip', ['link', 'set', o.tempName, 'netns', o.netns]);
  await run('ip', ['link', 'set', o.tempName, 'name', ifname], { netns: o.netns });
  await run('ip', ['link', 'set', o.bridgeSide, 'master', o.bridge], { netns: o.bridgeNetns });
  await run('ip', ['link', 'set', o.bridgeSide, 'up'], { netns: o.bridgeNetns });
  await run('ip', ['address', 'add', o.address, 'dev', ifname], { netns: o.netns });
  await run('ip', ['link', 'set', ifname, 'up'], { netns: o.netns });
}
