import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { loadVmmConfig } from '../src/config.ts';
import { MemoryDriver } from '../src/memory-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { signedCall } from './api-cases.ts';

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
    const fp = `${tmp}/formpacks/${fpId}`;
    mkdirSync(fp, { recursive: true });
    mkdirSync(`${tmp}/images`);
    const artifact = (file: string, content: string) => {
      writeFileSync(`${fp}/${file}`, content);
      return { file, sha256: createHash('sha256').update(content).digest('hex'), bytes: content.length };
    };
    writeFileSync(
      `${fp}/manifest.json`,
      JSON.stringify({
        id: fpId,
        name: 'web',
        owner: `0x${'0'.repeat(40)}`,
        createdAt: '2026-01-01T00:00:00Z',
        resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
        cmdline: 'console=ttyS0',
        init: '/sbin/form-init',
        formfile: { expose: [80], entrypoint: null },
        artifacts: {
          disk: artifact('disk.qcow2', 'disk'),
          kernel: artifact('vmlinuz', 'kernel'),
          initramfs: artifact('initramfs.img', 'initramfs'),
        },
        guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'dropbear' },
      }),
    );
    const config = loadVmmConfig(
      {},
      {
        vmDir: `${tmp}/vms`,
        imagesDir: `${tmp}/images`,
        formpacksDir: `${tmp}/formpacks`,
        cacheDir: `${tmp}/cache`,
        healthIntervalMs: 0,
        dataDiskMiB: 0,
        bootSnapshots: true,
      },
    );
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
