import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { MemoryDriver } from '../src/memory-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { signedCall } from './api-cases.ts';
import { memoryVmmConfig } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

// GET /vms/:id says how the VM started. The memory driver cannot restore templates: with bootSnapshots
// on, its VMs still boot (cold) and no template machinery runs.
describe('boot status in GET /vms/:id (memory driver, bootSnapshots on)', () => {
  let tmp: string;
  let vmm: VmmService;
  const alice = generateKeyPair();
  const call = signedCall(() => vmm, alice);
  const fpId = 'd'.repeat(64);

  before(async () => {
    tmp = mkdtempSync('/tmp/fvmm-bootstatus-');
    memoryFormpack(`${tmp}/formpacks`, { id: fpId });
    mkdirSync(`${tmp}/images`);
    const config = memoryVmmConfig(tmp, { bootSnapshots: true });
    vmm = await createVmmService({ config, logger: createLogger('silent'), driver: new MemoryDriver() });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  test('a booted VM reports boot.kind cold and its launch-to-ready time', async () => {
    assert.equal(vmm.manager.templates, undefined, 'no templates without a driver that restores them');
    const r = await call('POST', '/vms', { formpack: fpId, name: 'web-1', wait: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const g = await call('GET', `/vms/${r.body.id}`);
    assert.equal(g.status, 200);
    assert.equal(g.body.boot.kind, 'cold');
    assert.equal(g.body.boot.fallback, null);
    assert.equal(typeof g.body.boot.readyMs, 'number');
    assert.ok(g.body.boot.readyMs >= 0);
    assert.equal(g.body.measurement.cmdline.length, 64);
  });
});
