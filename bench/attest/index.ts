// Attestation benchmarks over real QEMU VMs (TCG here): time to fetch + verify a signed report
// (what `form attest` does per replica: fresh nonce, node measures QEMU's argv + files, asks the
// guest agent for the guest key, signs; the CLI verifies) for 1 instance and for 3 replicas at once,
// the first (cold: files hashed) and warm (hash cache) runs; and time to seal + deliver a secret.
// Disk encryption: time of the first `form disk unlock` (attest + luksFormat + mkfs + mount), and a
// write benchmark inside the guest (dd 64 MiB, O_DIRECT + fsync) on the LUKS /data of one VM vs the
// same kind of data disk formatted plain ext4 (no dm-crypt) on another VM: MB/s of both and the ratio.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { attestReplica, expectedMeasurement, putSecret, registerAttestRoutes, unlockDisk } from '@formation/attest';
import { generateKeyPair } from '@formation/identity';
import { missingPrograms } from '@formation/interface';
import { createLogger } from '@formation/service';
import { createVmmService } from '@formation/vmm';
import { integrationBlocker, qemuVmmConfig } from '@formation/vmm/testing';
import { attestFixture } from '../../packages/node/test/fixtures/attest-formpack.ts';
import { report } from '../report.ts';

const blocked =
  integrationBlocker() ?? (missingPrograms(['openssl']).length > 0 ? 'openssl is not installed' : undefined);
if (blocked) {
  console.error(`attest bench skipped: ${blocked}`);
  process.exit(0);
}
const fx = await attestFixture();
const tmp = mkdtempSync('/tmp/fattest-bench-');
const nodeKey = generateKeyPair();
const dev = generateKeyPair();
const vmm = await createVmmService({
  config: qemuVmmConfig(tmp, fx.formpacksDir, {
    capacity: { vcpu: 4, memMiB: 4096, vcpuOvercommit: 4, reserveMemMiB: 0 },
  }),
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

  // Disk encryption overhead.
  const t0 = performance.now();
  const att = await attestReplica(dev, targets[0]!, expected);
  const un = await unlockDisk(dev, att, randomBytes(32));
  report('disk.unlock_first', Math.round(performance.now() - t0), 'ms', {
    accel,
    note: 'attest + seal + luksFormat (pbkdf2 1000 it.) + open + mkfs.ext4 + mount',
    guest: un.output.split('\n')[0],
  });
  const plainVm = vms[1]!.id;
  const prep = await vmm.manager.exec(
    plainVm,
    '/bin/sh',
    [
      '-c',
      'set -e; umount /data; mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 /dev/vdb; ' +
        'mkdir -p /mnt/plain; mount -o noinit_itable /dev/vdb /mnt/plain',
    ],
    120_000,
  );
  if (prep.exitcode !== 0) throw new Error(`cannot prepare the plain data disk: ${prep.stderr}`);
  const ddMBs = async (vm: string, dir: string): Promise<number> => {
    const r = await vmm.manager.exec(
      vm,
      '/bin/sh',
      ['-c', `dd if=/dev/zero of=${dir}/bench bs=1M count=64 oflag=direct conv=fsync 2>&1; rm -f ${dir}/bench`],
      300_000,
    );
    const m = /copied, ([\d.]+) s/.exec(r.stdout);
    if (r.exitcode !== 0 || !m) throw new Error(`dd in ${dir} failed: ${r.stdout} ${r.stderr}`);
    return (64 * 1.048576) / Number(m[1]);
  };
  const enc: number[] = [];
  const plain: number[] = [];
  for (let i = 0; i < 3; i++) {
    enc.push(await ddMBs(vms[0]!.id, '/data'));
    plain.push(await ddMBs(plainVm, '/mnt/plain'));
  }
  const e = median(enc);
  const p = median(plain);
  const meta = { accel, runs: 3, stat: 'median', io: 'dd bs=1M count=64 oflag=direct conv=fsync' };
  report('disk.write.encrypted', Math.round(e * 10) / 10, 'MB/s', { ...meta, fs: 'ext4 on LUKS2 aes-xts-plain64' });
  report('disk.write.plain', Math.round(p * 10) / 10, 'MB/s', { ...meta, fs: 'ext4 on the same kind of data disk' });
  report('disk.write.overhead', Math.round((p / e) * 100) / 100, 'x', {
    accel,
    note: 'plain MB/s ÷ encrypted MB/s. Under TCG the vCPU has no AES-NI: the guest runs aes_generic, itself emulated; with KVM + AES-NI expect a much smaller ratio (not measured here)',
  });
} finally {
  await vmm.manager.destroyAll();
  await vmm.close({ stopVms: true });
  rmSync(tmp, { recursive: true, force: true });
}
