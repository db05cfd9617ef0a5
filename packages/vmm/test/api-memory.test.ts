import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import { MemoryDriver } from '../src/memory-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { apiCaseSetup, capacityRefusals, commitRevisions, refusedCreates, runningVmCases } from './api-cases.ts';
import { memoryVmmConfig, SMALL_CAPACITY } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

// The VMM API's own logic (auth, 404/403/409, state machine, capacity, commit) on the memory driver:
// no root, no QEMU, seconds. What needs a real guest stays in api.test.ts.

describe('VMM API on the memory driver (auth, 404/403/409, capacity, commit)', () => {
  let tmp: string;
  let vmm: VmmService;
  let fpId: string;
  let vmId = '';
  const { alice, mallory, call, ctx } = apiCaseSetup(
    () => vmm,
    () => fpId,
    () => vmId,
  );

  before(async () => {
    tmp = mkdtempSync('/tmp/fvmm-memapi-');
    mkdirSync(`${tmp}/images`);
    fpId = memoryFormpack(`${tmp}/formpacks`);
    const config = memoryVmmConfig(tmp, { stopTimeoutMs: 2000, capacity: SMALL_CAPACITY });
    vmm = await createVmmService({ config, logger: createLogger('silent'), driver: new MemoryDriver() });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  test('POST /vms must be signed; bad bodies are 400; unknown Formpack 404', () => refusedCreates(ctx));

  test('POST /vms creates and boots; the owner, measurement and ready mark are the VMM’s own', async () => {
    const r = await call('POST', '/vms', { formpack: fpId, name: 'web-1', wait: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    vmId = r.body.id;
    assert.equal(r.body.state, 'running');
    assert.equal(r.body.ready, true);
    assert.equal(r.body.owner, alice.address);
    const manifest = JSON.parse(readFileSync(`${tmp}/formpacks/${fpId}/manifest.json`, 'utf8'));
    assert.equal(r.body.measurement.kernel, manifest.artifacts.kernel.sha256);
    assert.deepEqual(r.body.network.forwards.map((f: { guest: number }) => f.guest).sort(), [22, 80]);
    assert.match((await call('GET', `/vms/${vmId}/console`)).body.output, /FORM-INIT-READY/);
  });

  runningVmCases(ctx);

  test('commit records a hashed revision with the guest thawed after; refused when paused or by another signer', () =>
    commitRevisions(ctx, (n) => `${tmp}/vms/${vmId}/revisions/rev-${n}.qcow2`));

  test('suspend to disk: no process, resources free, image 0600; wrong actions 409; a damaged image keeps it suspended', async () => {
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'echo kept > /tmp/warm']);
    assert.equal((await call('POST', `/vms/${vmId}/suspend`, {}, mallory)).status, 403);
    const s = await call('POST', `/vms/${vmId}/suspend`, {});
    assert.equal(s.status, 200, JSON.stringify(s.body));
    assert.equal(s.body.state, 'suspended');
    assert.equal(s.body.pid, null);
    assert.ok(s.body.suspended.bytes > 0);
    assert.equal(vmm.manager.capacity().used.memMiB, 0, 'a suspended VM holds no memory');
    const img = `${tmp}/vms/${vmId}/suspend/memory.mig`;
    assert.equal(statSync(img).mode & 0o777, 0o600);
    for (const action of ['pause', 'suspend', 'restart', 'commit']) {
      const r = await call('POST', `/vms/${vmId}/${action}`, {});
      assert.equal(r.status, 409, action);
      assert.equal(r.body.error.code, 'VM_BAD_STATE');
      assert.match(r.body.error.message, new RegExp(`Cannot ${action} VM .*: it is suspended`));
      // the contract's error schema keeps details (the VMM's own copy of it dropped them)
      assert.deepEqual(r.body.error.details?.allowed, ['resume', 'start', 'stop', 'destroy']);
    }
    // Truncated: refused with a clear error, still suspended, the image as it was.
    const good = readFileSync(img);
    writeFileSync(img, good.subarray(0, 5));
    const bad = await call('POST', `/vms/${vmId}/resume`, {});
    assert.equal(bad.body.error.code, 'VM_IMAGE_INVALID');
    assert.match(bad.body.error.message, /truncated or replaced/);
    assert.equal((await call('GET', `/vms/${vmId}`)).body.state, 'suspended');
    assert.equal(readFileSync(img).length, 5, 'a refused resume does not touch the image');
    writeFileSync(img, good);
    const r = await call('POST', `/vms/${vmId}/resume`, {});
    assert.equal(r.body.state, 'running', JSON.stringify(r.body));
    assert.equal(r.body.ready, true);
    assert.equal(r.body.suspended, null);
    assert.equal(existsSync(img), false, 'the image is deleted once resumed');
    assert.equal((await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'cat /tmp/warm'])).stdout, 'kept\n');
    // start resumes too; stop on a suspended VM discards the image (the next start boots).
    await call('POST', `/vms/${vmId}/suspend`, {});
    assert.equal((await call('POST', `/vms/${vmId}/start`, {})).body.state, 'running');
    await call('POST', `/vms/${vmId}/suspend`, {});
    const st = await call('POST', `/vms/${vmId}/stop`, {});
    assert.equal(st.body.state, 'stopped');
    assert.equal(existsSync(img), false);
    assert.equal((await call('POST', `/vms/${vmId}/start`, {})).body.state, 'running');
  });

  test('concurrent start calls are serialized: one boots, the other is 409, one process', async () => {
    assert.equal((await call('POST', `/vms/${vmId}/stop`, {})).body.state, 'stopped');
    const [a, b] = await Promise.all([call('POST', `/vms/${vmId}/start`, {}), call('POST', `/vms/${vmId}/start`, {})]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409]);
    const pid = (await call('GET', `/vms/${vmId}`)).body.pid as number;
    assert.ok(existsSync(`/proc/${pid}`));
  });

  test('capacity: a VM that does not fit is refused with the numbers and not left behind', () => capacityRefusals(ctx));

  test('a process killed from outside is a crashed VM; DELETE removes the VM and its files', async () => {
    const pid = (await call('GET', `/vms/${vmId}`)).body.pid as number;
    process.kill(pid, 'SIGKILL');
    let v = await call('GET', `/vms/${vmId}`);
    for (let i = 0; i < 100 && v.body.state === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      v = await call('GET', `/vms/${vmId}`);
    }
    assert.equal(v.body.state, 'crashed');
    assert.equal(v.body.lastExit.kind, 'killed');
    assert.equal((await call('DELETE', `/vms/${vmId}`)).status, 200);
    assert.equal((await call('GET', `/vms/${vmId}`)).status, 404);
    assert.equal(existsSync(`${tmp}/vms/${vmId}`), false);
  });
});
