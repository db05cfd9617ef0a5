// A template VM being booted is counted in the VMM's capacity().used; a build that would not fit waits
// (and starts once there is room); an instance's VM that needs the room gets it from the template VM.
// Memory driver with template operations (test/template-driver.ts): no QEMU.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { until } from '@formation/interface/testing';
import { processAlive } from '@formation/service/process';
import { sleep } from './helpers.ts';
import { templateVmmPerTest } from './template-driver.ts';

describe('boot templates and capacity (memory driver)', () => {
  const vmms = templateVmmPerTest('fh2-tplcap-');
  const setup = vmms.start;

  test('the template VM counts in capacity().used while it boots, and not after; GET /vms never lists it', async () => {
    const { vmm, driver, formpack } = await setup(4096);
    const a = await vmm.create({ formpack, name: 'a' });
    await until('the template VM', () => driver.templateVms.length === 1);
    assert.deepEqual(vmm.capacity().used, { vcpu: 2, memMiB: 512, diskGiB: a.resources.diskGiB });
    assert.deepEqual(
      vmm.list().map((v) => v.id),
      [a.id],
    );
    driver.reachWaitPoint();
    await vmm.templatesIdle();
    assert.equal(vmm.templates?.capability(formpack).capable, true, 'the template was saved');
    assert.deepEqual(vmm.capacity().used, { vcpu: 1, memMiB: 256, diskGiB: a.resources.diskGiB });
  });

  test('a build that does not fit waits (no template VM), and starts once there is room', async () => {
    const { vmm, driver, formpack } = await setup(400);
    const a = await vmm.create({ formpack, name: 'a' });
    await vmm.waitReady(a.id, 5000);
    await sleep(300); // ten looks at the capacity
    assert.equal(driver.templateVms.length, 0, 'no template VM while 256 + 256 MiB > 400 MiB');
    assert.equal(vmm.templates?.inUse, undefined);
    assert.deepEqual(vmm.capacity().used.memMiB, 256);
    await vmm.destroy(a.id);
    await until('the template VM once there is room', () => driver.templateVms.length === 1);
    assert.deepEqual(vmm.capacity().used, { vcpu: 1, memMiB: 256, diskGiB: 0 });
    driver.reachWaitPoint();
    await vmm.templatesIdle();
    assert.equal(vmm.templates?.capability(formpack).capable, true);
  });

  test("an instance's VM that needs the room stops the template VM; the build is tried again later", async () => {
    const { vmm, driver, formpack } = await setup(600);
    const a = await vmm.create({ formpack, name: 'a' });
    await until('the template VM', () => driver.templateVms.length === 1);
    assert.equal(vmm.capacity().used.memMiB, 512);
    const b = await vmm.create({ formpack, name: 'b' }); // 768 > 600 without the template's room
    assert.equal(vmm.get(b.id).state, 'running');
    assert.equal(await driver.status(driver.templateVms[0] as never), 'stopped');
    assert.equal(vmm.templates?.inUse, undefined);
    assert.equal(vmm.capacity().used.memMiB, 512);
    assert.equal(vmm.templates?.capability(formpack).capable, undefined, 'not learnt, not failed');
    await vmm.destroy(b.id);
    await until('a second template build', () => driver.templateVms.length === 2);
    assert.equal(vmm.capacity().used.memMiB, 512);
    driver.reachWaitPoint();
    await vmm.templatesIdle();
    assert.equal(vmm.templates?.capability(formpack).capable, true);
    assert.equal(vmm.get(a.id).state, 'running');
  });

  test('a template VM left running by a VMM killed mid-build is stopped when the next VMM starts', async () => {
    const first = await setup(4096);
    await first.vmm.create({ formpack: first.formpack, name: 'a' });
    await until('the template VM', () => first.driver.templateVms.length === 1);
    const pid = first.driver.templateVms[0]?.pid;
    assert.ok(pid && processAlive(pid), 'the template VM runs');
    // A second VMM on the same directories, the first never closed (as after a SIGKILL).
    const second = await vmms.again(4096);
    await until('the orphan gone', () => !processAlive(pid));
    assert.equal(existsSync(join(vmms.dir(), 'vms', String(first.driver.templateVms[0]?.spec.id))), false);
    assert.equal(second.vmm.list().length, 1, 'the instance VM is re-attached, the template VM is not one');
    await second.vmm.close();
  });

  test('a VM launched but not yet released when its VMM was killed is released by the next VMM', async () => {
    const first = await setup(4096);
    const a = await first.vmm.create({ formpack: first.formpack, name: 'a' });
    await until('the template VM', () => first.driver.templateVms.length === 1);
    first.driver.reachWaitPoint();
    await first.vmm.templatesIdle();
    assert.equal(first.vmm.templates?.capability(first.formpack).capable, true);
    first.driver.holdRelease = true; // the VMM "dies" before it releases b
    const b = await first.vmm.create({ formpack: first.formpack, name: 'b' });
    await sleep(200);
    assert.equal(first.vmm.get(b.id).ready, false, 'b waits for its identity');
    const second = await vmms.again(4096);
    const ready = await second.vmm.waitReady(b.id, 5000);
    assert.equal(ready.ready, true, 'released by the second VMM');
    assert.equal(second.vmm.get(a.id).state, 'running');
    await second.vmm.close();
  });
});
