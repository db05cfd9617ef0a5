import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { generateKeyPair, type KeyPair, sha256Hex, sign } from '@formation/identity';
import { createLogger } from '@formation/service';
import { createOp, encodeOp, openStateStore, type StateStore, type UnsignedOp } from '@formation/state';
import {
  createP2PNode,
  createSignedOp,
  MemoryOpStore,
  type Op,
  type OpStore,
  type P2PNode,
  type P2PNodeOptions,
} from '../src/index.ts';

export const logger = createLogger(process.env.FORM_LOG_LEVEL ?? 'silent');

/**
 * One replica's store as the tests drive it. Every p2p test runs against each harness: the
 * in-memory reference store and the real `@formation/state` SQLite op log.
 */
export interface StoreHarness {
  readonly store: OpStore;
  /** Author a valid op on top of the current heads; `tag` makes it unique. */
  append(key: KeyPair, tag: string): Op;
  /** A valid op by `key` on top of `parents`, not applied anywhere. */
  make(key: KeyPair, tag: string, parents: string[]): Op;
  /** An op claiming to be by `victim` but signed by `forger` (hash consistent, signature wrong). */
  forgeSignature(victim: KeyPair, forger: KeyPair, tag: string): Op;
  has(hash: string): boolean;
  size(): number;
  digest(): string;
  /** Close and reopen from disk (what a restarted node does); same object for in-memory stores. */
  reopen(): StoreHarness;
  close(): void;
}

function memoryHarness(store = new MemoryOpStore()): StoreHarness {
  return {
    store,
    append: (key, tag) => store.append(key, { tag }),
    make: (key, tag, parents) => createSignedOp(key, { tag }, parents),
    forgeSignature: (victim, forger, tag) => createSignedOp(victim, { tag }, [], forger),
    has: (h) => store.has(h),
    size: () => store.size(),
    digest: () => store.digest(),
    reopen: () => memoryHarness(store),
    close: () => undefined,
  };
}

const dirs: string[] = [];
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function stateHarness(path?: string): StoreHarness {
  let file = path;
  if (!file) {
    const dir = mkdtempSync(join(tmpdir(), 'formation-p2p-test-'));
    dirs.push(dir);
    file = join(dir, 'state.db');
  }
  const store: StateStore = openStateStore({ path: file, durability: 'normal' });
  const body = (tag: string) => ({ name: tag.slice(0, 64) });
  return {
    store,
    append: (key, tag) => store.author(key, 'account.update', body(tag)),
    make: (key, tag, parents) => createOp(key, 'account.update', body(tag), parents),
    forgeSignature: (victim, forger, tag) => {
      const unsigned: UnsignedOp = {
        v: 1,
        author: victim.publicKey,
        deps: [],
        kind: 'account.update',
        body: body(tag),
        ts: Date.now(),
      };
      const bytes = encodeOp(unsigned);
      return { ...unsigned, sig: sign(forger.privateKey, bytes), hash: sha256Hex(bytes) };
    },
    has: (h) => store.has(h),
    size: () => store.size,
    digest: () => store.digest(),
    reopen: () => {
      store.close();
      return stateHarness(file);
    },
    close: () => store.close(),
  };
}

export const HARNESSES: Record<string, () => StoreHarness> = {
  memory: () => memoryHarness(),
  state: () => stateHarness(),
};

export interface TestNode {
  key: KeyPair;
  h: StoreHarness;
  node: P2PNode;
}

export async function startNode(
  extra: Partial<Omit<P2PNodeOptions, 'store'>> & { key?: KeyPair; h: StoreHarness },
): Promise<TestNode> {
  const key = extra.key ?? generateKeyPair();
  const { h, ...rest } = extra;
  const node = await createP2PNode({
    listen: ['/ip4/127.0.0.1/tcp/0'],
    syncIntervalMs: 2_000,
    redialIntervalMs: 500,
    ...rest,
    key,
    store: h.store,
    logger,
  });
  return { key, h, node };
}

/**
 * Start nodes for one test file and stop them all (closing their stores) after its tests; `stop(n)`
 * stops one early (a restart test), so it is not stopped again.
 *
 * @example
 * const { start } = trackNodes();
 * const a = await start({ h: HARNESSES.memory!() });
 */
export function trackNodes(): {
  start: (extra: Parameters<typeof startNode>[0]) => Promise<TestNode>;
  stop: (n: TestNode) => Promise<void>;
} {
  const running = new Set<TestNode>();
  after(async () => {
    await Promise.allSettled([...running].map((n) => n.node.stop()));
    for (const n of running) n.h.close();
  });
  return {
    async start(extra) {
      const n = await startNode(extra);
      running.add(n);
      return n;
    },
    async stop(n) {
      running.delete(n);
      await n.node.stop();
    },
  };
}
