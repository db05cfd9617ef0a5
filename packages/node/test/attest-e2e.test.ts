import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  attestationSummary,
  attestReplica,
  diskStatus,
  expectedMeasurement,
  putSecret,
  type ReplicaTarget,
  registerAttestRoutes,
  unlockDisk,
  verifyReport,
} from '@formation/attest';
import { generateKeyPair, randomHex, signRequest } from '@formation/identity';
import { requireOrSkip } from '@formation/interface/testing';
import { apiIdentity, createLogger, setApiIdentity } from '@formation/service';
import { createVmmService, type VmmService, type VmView } from '@formation/vmm';
import { integrationBlocker, qemuVmmConfig } from '@formation/vmm/testing';
import { type AttestFixture, attestFixture } from './fixtures/attest-formpack.ts';

const why = requireOrSkip('attestation e2e test', { programs: ['openssl'], check: () => integrationBlocker() });

/**
 * End to end against real QEMU VMs (TCG): two "replicas" on one node, one booted from the Formpack,
 * one from a copy whose disk was tampered with. One full boot (the tampered one only needs its QEMU).
 */
describe('attestation end to end (real VMs)', { skip: why, timeout: 600_000 }, () => {
  let tmp: string;
  let vmm: VmmService;
  let fx: AttestFixture;
  let url: string;
  let good: VmView;
  let bad: VmView;
  const nodeKey = generateKeyPair();
  const otherNode = generateKeyPair();
  const dev = generateKeyPair();
  const target = (vm: VmView): ReplicaTarget => ({ url, nodePublicKey: nodeKey.publicKey, vm: vm.name });

  before(async () => {
    fx = await attestFixture();
    tmp = mkdtempSync('/tmp/fattest-e2e-');
    const config = qemuVmmConfig(tmp, fx.formpacksDir, {
      stopTimeoutMs: 5000,
      capacity: { vcpu: 4, memMiB: 2048, vcpuOvercommit: 4, reserveMemMiB: 0 },
    });
    vmm = await createVmmService({
      config,
      logger: createLogger('silent'),
      routes: (app, manager) =>
        registerAttestRoutes(app, {
          nodeKey,
          vmm: manager,
          logger: createLogger('silent'),
          ownerOf: () => dev.address,
        }),
    });
    setApiIdentity(vmm.app, nodeKey.publicKey); // as formationd does: the VMM API speaks for the node key
    await vmm.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(vmm.app.server.address() as AddressInfo).port}`;
    good = await vmm.manager.create({ formpack: fx.id, name: 'att-good' });
    bad = await vmm.manager.create({ formpack: fx.tamperedId, name: 'att-tampered' });
    good = await vmm.manager.waitReady(good.id, 120_000);
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the honest replica passes with its guest key; the tampered one fails on its disk', async () => {
    const expected = expectedMeasurement(fx.manifest).inputs;
    const [ok, tampered] = await Promise.all([
      attestReplica(dev, target(good), expected),
      attestReplica(dev, target(bad), expected),
    ]);
    assert.equal(ok.verdict.ok, true, ok.verdict.reason);
    assert.match(ok.report?.report.guestKey ?? '', /^[0-9a-f]{64}$/);
    assert.match(ok.report?.report.measurement.cmdline ?? '', new RegExp(`vm_id=${good.id}$`));
    assert.equal(tampered.verdict.ok, false);
    assert.deepEqual(
      tampered.verdict.checks.filter((c) => !c.ok && c.name !== 'guest-key').map((c) => c.name),
      ['measurement.disk', 'measurement'],
    );
    assert.match(tampered.verdict.reason, /base disk differs/);

    // The same genuine report, checked against another node's key (the replica is elsewhere): refused.
    const v = verifyReport(ok.report!, {
      nodePublicKey: otherNode.publicKey,
      nonce: ok.report!.report.nonce,
      expected,
    });
    assert.deepEqual(
      v.checks.filter((c) => !c.ok).map((c) => c.name),
      ['node'],
    );
  });

  it('a secret reaches only the attested guest, decrypted there to /run/form/secrets (0600)', async () => {
    const expected = expectedMeasurement(fx.manifest).inputs;
    const ok = await attestReplica(dev, target(good), expected);
    const res = await putSecret(dev, ok, 'DB_PASSWORD', Buffer.from('s3cret value'));
    assert.equal(res.path, '/run/form/secrets/DB_PASSWORD');
    const r = await vmm.manager.exec(good.id, '/bin/sh', [
      '-c',
      'stat -c %a /run/form/secrets/DB_PASSWORD; cat /run/form/secrets/DB_PASSWORD',
    ]);
    assert.equal(r.stdout, '600\ns3cret value');
    const key = await vmm.manager.exec(good.id, '/bin/sh', ['-c', 'stat -c %a /run/form/attest/x25519.pem']);
    assert.equal(key.stdout.trim(), '600');

    const tampered = await attestReplica(dev, target(bad), expected);
    await assert.rejects(
      putSecret(dev, tampered, 'DB_PASSWORD', Buffer.from('s3cret value')),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'SECRET_REFUSED');
        assert.match(e.message, /attestation failed \(.*base disk differs/);
        return true;
      },
    );
  });

  it('a signed attestation request replayed later is refused', async () => {
    const path = `/attest/vms/${good.name}/report`;
    const body = JSON.stringify({ nonce: randomHex(32) });
    const headers = {
      'content-type': 'application/json',
      ...signRequest(dev, { method: 'POST', path, body, audience: apiIdentity(vmm.app) }),
    };
    const first = await fetch(url + path, { method: 'POST', headers, body });
    assert.equal(first.status, 200);
    const again = await fetch(url + path, { method: 'POST', headers, body });
    assert.equal(again.status, 401);
    assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'AUTH_REPLAYED');
  });

  it('status shows per-replica attestation: ok for the honest one, FAILED with the reason for the tampered one', async () => {
    const expected = expectedMeasurement(fx.manifest).inputs;
    const [ok, tampered] = await Promise.all([
      attestReplica(dev, target(good), expected),
      attestReplica(dev, target(bad), expected),
    ]);
    assert.equal(attestationSummary(ok), 'ok');
    assert.match(attestationSummary(tampered), /^FAILED \(.*base disk differs/);
  });

  describe('encrypted data disk', () => {
    const diskKey = randomBytes(32);
    const marker = `FORMATION-PLAINTEXT-${randomBytes(8).toString('hex')}`;
    const dataFile = () => `${tmp}/vms/${good.id}/qemu/data.qcow2`;
    const sh = async (cmd: string) => vmm.manager.exec(good.id, '/bin/sh', ['-c', cmd], 60_000);
    const attestGood = () => attestReplica(dev, target(good), expectedMeasurement(fx.manifest).inputs);

    it('is locked at boot (read-only placeholder), unlocks with the key, and the node sees only ciphertext', async () => {
      assert.ok(existsSync(dataFile()), 'the VMM made a data disk next to the overlay');
      let st = await diskStatus(dev, target(good));
      assert.equal(st.state, 'locked', JSON.stringify(st));
      assert.equal(st.luks, 'no');
      const early = await sh('(echo x > /data/early) 2>&1; echo rc=$?');
      assert.match(
        early.stdout,
        /Read-only file system[\s\S]*rc=[12]/,
        'nothing can be written under /data while locked',
      );

      const r = await unlockDisk(dev, await attestGood(), diskKey);
      assert.match(r.output, /unlocked \/dev\/vd[b-z] mounted at \/data \(formatted now\)/);
      st = await diskStatus(dev, target(good));
      assert.deepEqual([st.state, st.luks, st.mount], ['unlocked', 'yes', '/data']);
      const keyLeft = await sh('ls /run/form/secrets/form-disk-key 2>&1; true');
      assert.match(keyLeft.stdout, /No such file/, 'the key file is consumed, not left in /run');

      // The same marker, many times, into the encrypted disk and (the control) into the plain root.
      const w = await sh(
        `for i in $(seq 200); do echo ${marker}; done > /data/marker.txt && ` +
          `for i in $(seq 200); do echo ${marker}; done > /root/control.txt && sync && head -1 /data/marker.txt`,
      );
      assert.equal(w.exitcode, 0, w.stderr);
      assert.equal(w.stdout.trim(), marker, 'readable inside the guest');
      const data = readFileSync(dataFile());
      assert.ok(data.includes(Buffer.from('LUKS\xba\xbe', 'latin1')), 'the data disk carries a LUKS header');
      assert.equal(data.includes(marker), false, 'the plaintext is not in the data qcow2');
      const overlay = readFileSync(`${tmp}/vms/${good.id}/qemu/disk.qcow2`);
      assert.ok(overlay.includes(marker), 'control: the same marker IS visible in the unencrypted root overlay');
    });

    it('a replica that fails attestation gets no disk key', async () => {
      const tampered = await attestReplica(dev, target(bad), expectedMeasurement(fx.manifest).inputs);
      await assert.rejects(unlockDisk(dev, tampered, diskKey), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'SECRET_REFUSED');
        assert.match(e.message, /attestation failed \(.*base disk differs/);
        return true;
      });
    });

    it('after a restart it is locked again; a wrong key is refused and changes nothing; the right key brings the data back', async () => {
      await vmm.manager.restart(good.id);
      good = await vmm.manager.waitReady(good.id, 180_000);
      let st = await diskStatus(dev, target(good));
      assert.deepEqual([st.state, st.luks], ['locked', 'yes']);
      const gone = await sh('cat /data/marker.txt 2>&1; true');
      assert.doesNotMatch(gone.stdout, new RegExp(marker), 'locked: the file is not readable');

      const before = createHash('sha256').update(readFileSync(dataFile())).digest('hex');
      await assert.rejects(unlockDisk(dev, await attestGood(), randomBytes(32)), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'SECRET_REFUSED');
        assert.match(e.message, /the disk key: Cannot unlock the data disk: this key does not open it/);
        return true;
      });
      assert.equal(createHash('sha256').update(readFileSync(dataFile())).digest('hex'), before, 'disk untouched');
      st = await diskStatus(dev, target(good));
      assert.equal(st.state, 'locked');

      const r = await unlockDisk(dev, await attestGood(), diskKey);
      assert.match(r.output, /mounted at \/data \(existing data\)/);
      const back = await sh('head -1 /data/marker.txt; wc -l < /data/marker.txt');
      assert.equal(back.stdout.trim(), `${marker}\n200`);
      // unlocking again is harmless, but a wrong key is refused even while unlocked
      assert.match((await unlockDisk(dev, await attestGood(), diskKey)).output, /already mounted/);
      await assert.rejects(unlockDisk(dev, await attestGood(), randomBytes(32)), /this key does not open it/);
    });
  });
});
