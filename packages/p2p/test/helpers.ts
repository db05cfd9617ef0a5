import { generateKeyPair, type KeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { createP2PNode, MemoryOpStore, type P2PNode, type P2PNodeOptions } from '../src/index.ts';

/**
 * The store the p2p tests run against. The in-memory reference store stands in until
 * `@formation/state` lands; switching is this one function.
 */
export function makeStore(): MemoryOpStore {
  return new MemoryOpStore();
}

export const logger = createLogger(process.env.FORM_LOG_LEVEL ?? 'silent');

export interface TestNode {
  key: KeyPair;
  store: MemoryOpStore;
  node: P2PNode;
}

export async function startNode(
  extra: Partial<P2PNodeOptions> & { key?: KeyPair; store?: MemoryOpStore } = {},
): Promise<TestNode> {
  const key = extra.key ?? generateKeyPair();
  const store = extra.store ?? makeStore();
  const node = await createP2PNode({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    syncIntervalMs: 2_000,
    redialIntervalMs: 500,
    ...extra,
    key,
    store,
    logger,
  });
  return { key, store, node };
}

/** Poll `cond` every 25 ms until true or `ms` elapse. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
