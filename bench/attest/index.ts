// Attestation benchmarks over real QEMU VMs (TCG here): time to fetch + verify a signed report
// (what `form attest` does per replica: fresh nonce, node measures QEMU's argv + files, asks the
// guest agent for the guest key, signs; the CLI verifies) for 1 instance and for 3 replicas at once,
// the first (cold: files hashed) and warm (hash cache) runs; and time to seal + deliver a secret.
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import {
  attestFixture,
  attestReplica,
  expectedMeasurement,
  integrationBlocker,
  putSecret,
  registerAttestRoutes,
} from '@formation/attest';
import { generateKeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { createVmmService, loadVmmConfig } from '@formation/vmm';
import { report } from '../report.ts';

const blocked = integrationBlocker();
if (blocked) {
  console.error(`attest bench skipped: ${blocked}`);
  process.exit(0);
}
const fx = await attestFixture();
const tmp = mkdtempSync('/tmp/fattest-bench-');
const nodeKey = generateKeyPair();
const dev = generateKeyPair();
const vmm = await createVmmService({
  config: loadVmmConfig(
    {},
    {
      vmDir: `${tmp}/vms`,
      imagesDir: `${tmp}/images`,
      formpacksDir: fx.formpacksDir,
      cacheDir: '/var/tmp/formation-vmm-cache',
      healthIntervalMs: 0,
      capacity: { vcpu: 4, memMiB: 4096, vcpuOvercommit: 4, reserveMemMiB: 0 },
    },
  ),
  logger: createLogger('silent'),
  routes: (app, manager) =>
    registerAttestRoutes(app, { nodeKey, vmm: manager, logger: createLogger('silent'), ownerOf: () => dev.address }),
});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
try {
  await vmm.app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(vmm.app.server.address() as AddressInfo).port}`;
  const vms = [];
  for (let i = 0; i < 3; i++) vms.push(await vmm.manager.create({ formpack: fx.id, name: `att-bench-${i}` }));
  for (const v of vms) await vmm.manager.waitReady(v.id, 240_000);
  const expected = expectedMeasurement(fx.manifest).inputs;
  const targets = vms.map((v) => ({ url, nodePublicKey: nodeKey.publicKey, vm: v.name }));
  const accel = vmm.manager.fingerprint?.accel ?? 'unknown';

  const cold = await attestReplica(dev, targets[0]!, expected);
  if (!cold.verdict.ok) throw new Error(`attestation failed: ${cold.verdict.reason}`);
  report('attest.one.cold', Math.round(cold.ms), 'ms', { accel, note: 'first report: kernel, initramfs, disk hashed' });
  const one: number[] = [];
  for (let i = 0; i < 5; i++) one.push((await attestReplica(dev, targets[0]!, expected)).ms);
  report('attest.one', Math.round(median(one)), 'ms', { accel, runs: 5, stat: 'median' });
  const three: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const rs = await Promise.all(targets.map((t) => attestReplica(dev, t, expected)));
    if (!rs.every((r) => r.verdict.ok)) throw new Error('a replica failed attestation');
    three.push(performance.now() - t0);
  }
  report('attest.three_replicas', Math.round(median(three)), 'ms', { accel, runs: 5, stat: 'median', parallel: true });
  const secret: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await attestReplica(dev, targets[0]!, expected);
    const t0 = performance.now();
    await putSecret(dev, r, 'BENCH', Buffer.from('x'.repeat(64)));
    secret.push(performance.now() - t0);
  }
  report('secret.put_after_attest', Math.round(median(secret)), 'ms', { accel, runs: 3, stat: 'median' });
} finally {
  await vmm.manager.destroyAll();
  await vmm.close({ stopVms: true });
  rmSync(tmp, { recursive: true, force: true });
}
