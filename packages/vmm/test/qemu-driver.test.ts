import { mkdtempSync, rmSync } from 'node:fs';
import { after } from 'node:test';
import { createLogger } from '@formation/service';
import { runDriverCompliance } from '../src/compliance.ts';
import type { DriverVmSpec } from '../src/driver.ts';
import { freePort } from '../src/network.ts';
import { QemuDriver } from '../src/qemu-driver.ts';
import { fixture, fixtureBoot, integrationOpts, testVmSpec } from './helpers.ts';

const opts = integrationOpts();
const tmp = mkdtempSync('/tmp/fvmm-drv-');
after(() => rmSync(tmp, { recursive: true, force: true }));
const logger = createLogger('silent');
let n = 0;
const fx = opts.skip ? undefined : fixture();
const port = opts.skip ? 0 : await freePort();

runDriverCompliance({
  name: 'qemu',
  skip: opts.skip,
  makeDriver: () =>
    new QemuDriver({
      logger,
      probeCacheFile: '/var/tmp/formation-vmm-cache/accel-probe.json',
      probeKernel: boot().kernel,
    }),
  // a data disk too, so create/snapshot/restore/destroy are checked with it
  makeSpec: (): DriverVmSpec =>
    testVmSpec(`cmp-${process.pid}-${++n}`, tmp, boot(), [{ guest: 22, host: port }], { dataDiskMiB: 64 }),
});

/** How the test Formpack boots (read when a driver or spec is made: the suite is skipped without it). */
function boot() {
  if (!fx) throw new Error('no fixture');
  return fixtureBoot(fx);
}
