import { mkdtempSync, rmSync } from 'node:fs';
import { after } from 'node:test';
import { createLogger } from '@formation/service';
import { runDriverCompliance } from '../src/compliance.ts';
import type { DriverVmSpec } from '../src/driver.ts';
import { readFormpackDir } from '../src/images.ts';
import { freePort, macFor } from '../src/network.ts';
import { QemuDriver } from '../src/qemu-driver.ts';
import { fixture, integrationOpts } from './helpers.ts';

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
      probeKernel: fp().kernel,
    }),
  makeSpec: (): DriverVmSpec => {
    const p = fp();
    const id = `cmp-${process.pid}-${++n}`;
    return {
      id,
      name: id,
      vcpu: 1,
      memMiB: 256,
      dir: `${tmp}/${id}`,
      kernel: p.kernel,
      initramfs: p.initramfs,
      cmdline: `${p.manifest.cmdline} vm_name=${id} vm_id=${id}`,
      baseDisk: p.disk,
      baseDiskFormat: 'qcow2',
      diskGiB: 1,
      // a data disk too, so create/snapshot/restore/destroy are checked with it
      dataDiskMiB: 64,
      network: { mode: 'user', forwards: [{ guest: 22, host: port }], mac: macFor(id) },
      agentChannel: p.manifest.guest.agentChannel,
    };
  },
});

function fp() {
  if (!fx) throw new Error('no fixture');
  return readFormpackDir(`${fx.formpacksDir}/${fx.id}`, fx.id);
}
