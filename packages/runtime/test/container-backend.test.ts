import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { FakeBackend } from '../src/fake-backend.ts';
import { containerBackendContract } from './container-backend.contract.ts';
import { tmp } from './helpers.ts';

// The fake backend against the ContainerBackend contract (unit lane: no root). The runc backend runs
// the same suite in vm.test.ts (integration: root, runc).

containerBackendContract('fake', async () => {
  const dir = tmp('fake-backend');
  return {
    backend: new FakeBackend(),
    spec: (id) => ({
      id,
      bundleDir: join(dir, id),
      rootfs: join(dir, 'rootfs'),
      image: {},
      limits: { memoryMiB: 64, cpus: 1, pids: 16 },
      env: [],
    }),
    close: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
