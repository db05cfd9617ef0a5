import { MemoryRuntimeStore } from '../src/memory-store.ts';
import { runtimeStoreContract } from './runtime-store.contract.ts';

// The memory store against the RuntimeStore contract (unit lane: nothing outside the process). The
// Redis store runs the same suite in redis-store.test.ts.

runtimeStoreContract('memory', async () => ({
  fresh: async () => new MemoryRuntimeStore(),
  // nothing to reconnect: the same maps are the store
  reopen: async (store) => store,
  close: async () => undefined,
}));
