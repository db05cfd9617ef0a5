import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadVmmConfig } from '../src/config.ts';
import { qemuVmmConfig } from '../src/testing.ts';

// qemuVmmConfig replaced a block copied into the QEMU tests (vmm, attest, node, bench): it must give
// what that block gave, and flags must still win over its defaults.
describe('qemuVmmConfig', () => {
  test('equals the config the QEMU tests used to spell out', () => {
    const copied = loadVmmConfig(
      {},
      {
        vmDir: '/tmp/fvmm-x/vms',
        imagesDir: '/tmp/fvmm-x/images',
        formpacksDir: '/var/tmp/fixture/formpacks',
        cacheDir: '/var/tmp/formation-vmm-cache',
        healthIntervalMs: 0,
      },
    );
    assert.deepEqual(qemuVmmConfig('/tmp/fvmm-x', '/var/tmp/fixture/formpacks'), copied);
  });

  test('flags add to the defaults and override them', () => {
    const c = qemuVmmConfig('/tmp/fvmm-x', '/fp', {
      vmDir: '/tmp/fvmm-x/vms2',
      healthIntervalMs: 500,
      stopTimeoutMs: 5000,
    });
    assert.equal(c.vmDir, '/tmp/fvmm-x/vms2');
    assert.equal(c.imagesDir, '/tmp/fvmm-x/images');
    assert.equal(c.formpacksDir, '/fp');
    assert.equal(c.cacheDir, '/var/tmp/formation-vmm-cache');
    assert.equal(c.healthIntervalMs, 500);
    assert.equal(c.stopTimeoutMs, 5000);
  });
});
