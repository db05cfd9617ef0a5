// Standby VMs (src/vm-standby.ts): once a Formpack has a boot template, one VM of the last request shape
// is restored from it ahead of time and left paused; the next create of that shape takes it. Memory
// driver with template operations (test/template-driver.ts): no QEMU; the real restore runs in
// boot-snapshot.test.ts.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { until } from '@formation/interface/testing';
import { processAlive } from '@formation/service/process';
import type { VmStore } from '../src/store.ts';
import type { VmRecord } from '../src/types.ts';
import type { CreateVmRequest } from '../src/vm-create.ts';
import { standbyKey } from '../src/vm-standby.ts';
import { templateVmmPerTest } from './template-driver.ts';

/** The Formpack id a VM was made from. */
const s0 = (v: { source: object }): string => (v.source as { id: string }).id;
const OWNER = '0x1111111111111111111111111111111111111111';

test('standbyKey: the parts of a request a standby must match; none for what no standby serves', () => {
  const fp = 'ab'.repeat(32);
  const base = standbyKey({ formpack: fp });
  assert.ok(base);
  assert.equal(standbyKey({ formpack: fp, name: 'x', restartPolicy: 'on-failure', start: true }), base);
  const others: Array<[string, CreateVmRequest]> = [
    ['other resources', { formpack: fp, resources: { memMiB: 1024 } }],
    ['other ports', { formpack: fp, forwardPorts: [22, 80] }],
    ['no egress', { formpack: fp, egress: false }],
    ['a data disk size', { formpack: fp, dataDiskMiB: 64 }],
    ['another Formpack', { formpack: 'cd'.repeat(32) }],
  ];
  for (const [what, req] of others) {
    assert.notEqual(standbyKey(req), base, what);
  }
  for (const [what, req] of [
    ['an image', { image: 'x.qcow2' }],
    ['not started', { formpack: fp, start: false }],
    ['a GPU', { formpack: fp, gpu: { vendor: 'nvidia', count: 1 } }],
  ] as const) {
    assert.equal(standbyKey(req as never), undefined, what);
  }
});

describe('standby VMs (memory driver)', () => {
  const vmms = templateVmmPerTest('fh2-standby-', { bootStandby: 1 });
  /** The standby VMs on disk (a standby is never listed). */
  const withStandbys = <T extends { store: VmStore }>(made: T) => ({
    ...made,
    standbys: (): VmRecord[] => made.store.loadAll().records.filter((r) => r.standby),
  });

  /** A first VM, its template built, and the standby made after it. */
  async function withStandby(memMiB = 4096) {
    const s = withStandbys(await vmms.start(memMiB));
    const a = await s.vmm.create({ formpack: s.formpack, name: 'a' });
    await until('the template VM', () => s.driver.templateVms.length === 1);
    s.driver.reachWaitPoint();
    await s.vmm.templatesIdle();
    return { ...s, a };
  }

  test('made paused once the template exists: not listed, counted in capacity; the next create takes it', async () => {
    const { vmm, driver, a, standbys } = await withStandby();
    const [sb] = standbys();
    assert.ok(sb, 'a standby was made');
    assert.equal(sb.state, 'paused');
    assert.equal(sb.owner, null);
    assert.equal(await driver.status(sb.driver), 'paused');
    assert.deepEqual(
      vmm.list().map((v) => v.id),
      [a.id],
      'only the instance VM is listed',
    );
    assert.throws(() => vmm.get(sb.id), /Cannot find VM/);
    assert.equal(vmm.capacity().used.memMiB, 512, 'the instance VM and the standby');

    const b = await vmm.create({ formpack: s0(a), name: 'b', restartPolicy: 'on-failure' }, OWNER);
    assert.equal(b.id, sb.id, 'the standby was taken');
    assert.equal(b.name, 'b');
    assert.equal(b.owner, OWNER);
    assert.equal(b.restartPolicy, 'on-failure');
    assert.equal(b.state, 'running');
    assert.deepEqual({ kind: b.boot?.kind, standby: b.boot?.standby }, { kind: 'snapshot', standby: true });
    const ready = await vmm.waitReady(b.id, 5000);
    assert.equal(ready.ready, true, 'released with its identity');
    const hostname = await vmm.exec(b.id, '/bin/cat', ['/etc/hostname']).catch(() => undefined);
    assert.notEqual(hostname, undefined);
    // Another standby replaces the one taken.
    await vmm.templatesIdle();
    const next = standbys();
    assert.equal(next.length, 1);
    assert.notEqual(next[0]?.id, b.id);
    assert.deepEqual(
      vmm
        .list()
        .map((v) => v.id)
        .sort(),
      [a.id, b.id].sort(),
    );
  });

  test('a create of another shape does not take it', async () => {
    const { vmm, a, standbys } = await withStandby();
    const [sb] = standbys();
    assert.ok(sb);
    // Other forwarded ports: the same template fits, the standby (made with the default ports) does not.
    const c = await vmm.create({ formpack: s0(a), name: 'c', forwardPorts: [22, 8080] });
    assert.notEqual(c.id, sb.id);
    assert.equal(c.boot?.standby, undefined);
    assert.equal(c.boot?.kind, 'snapshot', 'restored from the template, not from the standby');
    // One standby is kept (bootStandby 1), for the shape used last: c's replaces a's.
    await vmm.templatesIdle();
    await until('the standby of the old shape gone', () => !standbys().some((r) => r.id === sb.id));
    const [next] = standbys();
    assert.ok(next, 'a standby of the new shape');
    assert.deepEqual(next.ports, [22, 8080]);
  });

  test("a VM that needs the standby's room gets it: the standby goes", async () => {
    const { vmm, a, standbys } = await withStandby(600);
    const [sb] = standbys();
    assert.ok(sb);
    assert.equal(vmm.capacity().used.memMiB, 512);
    // 256 + 256 (standby) + 256 > 600: the standby gives its room back to an instance's VM of another shape.
    const c = await vmm.create({ formpack: s0(a), name: 'c', forwardPorts: [22, 8080] });
    assert.equal(vmm.get(c.id).state, 'running');
    assert.notEqual(c.id, sb.id);
    assert.equal(existsSync(join(vmms.dir(), 'vms', sb.id)), false, 'the standby VM is gone');
    assert.equal(sb.driver.pid !== undefined && processAlive(sb.driver.pid), false);
  });

  test('close removes the standby; one left by a VMM killed meanwhile is removed by the next VMM', async () => {
    const first = await withStandby();
    const [sb] = first.standbys();
    assert.ok(sb?.driver.pid && processAlive(sb.driver.pid), 'the standby runs (paused)');
    // A second VMM on the same directories, the first never closed (as after a SIGKILL).
    const second = withStandbys(await vmms.again(4096));
    await until('the left standby gone', () => !processAlive(sb.driver.pid as number));
    assert.equal(
      second.standbys().some((r) => r.id === sb.id),
      false,
    );
    assert.deepEqual(
      second.vmm.list().map((v) => v.id),
      [first.a.id],
    );
    await second.vmm.close();
    // The first VMM's close removes what it holds (here: its record is already gone).
    await first.vmm.close();
    assert.equal(first.standbys().length, 0);
  });
});
