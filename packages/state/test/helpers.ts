import { generateWireGuardKeyPair, type KeyPair, keyPairFromPrivate } from '@formation/identity';
import { createLogger } from '@formation/service';
import { createStateService, openStateStore, type StateServiceOptions, type StateStore } from '../src/index.ts';

/** Deterministic key number `i` (tests must be reproducible). */
export function key(i: number): KeyPair {
  return keyPairFromPrivate((i + 1).toString(16).padStart(64, '0'));
}

export const WG = generateWireGuardKeyPair().publicKey;
const wgKeys = new Map<number, string>();
/** A WireGuard public key per node number (node keys must be unique in a network). */
export function wgKey(i: number): string {
  let k = wgKeys.get(i);
  if (!k) {
    k = generateWireGuardKeyPair().publicKey;
    wgKeys.set(i, k);
  }
  return k;
}

/** A node.register body; its slice is 10.129.<i>.0/24 (node slices lie outside the member pool 10.128/16). */
export function nodeBody(i: number): Record<string, unknown> {
  return {
    capacity: { vcpu: 4, memMiB: 8192, diskGiB: 100 },
    endpoint: `127.0.0.1:${4000 + i}`,
    p2pPeerId: `12D3KooPeer${i}`,
    wgPublicKey: wgKey(i),
    formnetRange: `10.129.${i}.0/24`,
  };
}

export const FORMPACK_ID = 'ab'.repeat(32);

export function instanceBody(name = 'web'): Record<string, unknown> {
  return { formpackId: FORMPACK_ID, name, replicas: 1, resources: { vcpu: 1, memMiB: 512, diskGiB: 5 } };
}

/** `owner` creates a one-replica instance of `formpackId` (1 vCPU, 512 MiB, 5 GiB disk); returns its id. */
export function createInstance(store: StateStore, owner: KeyPair, formpackId: string, name = 'web'): string {
  return store.author(owner, 'instance.create', {
    formpackId,
    name,
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  }).body.id as string;
}

/** A node.register body of LAN node `i` (192.168.77.<i+2>:3005, slice 10.129.<i>.0/24; 4 vCPU, 4 GiB, 50 GiB). */
export function lanNodeBody(i: number, wgPublicKey = 'A'.repeat(43) + '='): Record<string, unknown> {
  return {
    capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
    endpoint: `192.168.77.${i + 2}:3005`,
    p2pPeerId: `peer${i}`,
    wgPublicKey,
    formnetRange: `10.129.${i}.0/24`,
  };
}

/** `node` claims instance `instanceId` and reports it running at `formnetIp`. */
export function claimRunning(
  store: StateStore,
  node: KeyPair,
  instanceId: string,
  formnetIp: string,
  revision = 0,
): void {
  store.author(node, 'instance.claim', { instanceId, node: node.publicKey });
  store.author(node, 'instance.status', { instanceId, node: node.publicKey, state: 'running', formnetIp, revision });
}

export function memStore(
  opts: { pendingMaxOps?: number; pendingMaxBytes?: number; genesis?: string } = {},
): StateStore {
  return openStateStore({ path: ':memory:', ...opts });
}

/** The state API over `store`, ready for `app.inject()` (silent logger; `opts` e.g. `maxBatch`, `rateLimit`). */
export async function stateApi(
  store: StateStore,
  opts: Partial<Omit<StateServiceOptions, 'store'>> = {},
): Promise<Awaited<ReturnType<typeof createStateService>>> {
  const app = await createStateService({ store, logger: createLogger('silent'), ...opts });
  await app.ready();
  return app;
}

/** Small seeded PRNG (mulberry32): same seed, same sequence. */
export function rng(seed: number): { next: () => number; int: (n: number) => number; pick: <T>(a: readonly T[]) => T } {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: (a) => a[int(a.length)] as (typeof a)[number] };
}

export function shuffle<T>(a: T[], r: { int: (n: number) => number }): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}
