import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { canTransitionReplica, replicaStateOf } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { type ControllerNode, startControllerNode } from './fixtures/controller-node.ts';

// The executor against a real state store and a real VM manager on the memory driver: the controller
// claims, boots, reports, stops, starts and removes as plan() says. No root, no QEMU.

let n: ControllerNode;

before(async () => {
  n = await startControllerNode({ tmpPrefix: '/tmp/fnode-ctl-' });
});

after(async () => {
  await n?.close();
});

test('an instance placed here is claimed, booted and reported running; owner stop/start; delete removes its VM', async () => {
  const { store, dev, vmm, mine, vmOf } = n;
  const statuses: string[] = [];
  const id = n.createInstance('web');
  const record = () => {
    const s = replicaStateOf(mine(id)?.state ?? null);
    if (statuses.at(-1) !== s) statuses.push(s);
    return s;
  };
  await until('running', () => record() === 'running', 10_000, 25);
  assert.equal(vmOf(id)?.state, 'running');

  store.author(dev, 'instance.update', { instanceId: id, desired: 'stopped' });
  await until('stopped', () => record() === 'stopped', 10_000, 25);
  assert.equal(vmOf(id)?.state, 'stopped', 'the VM is stopped, its disk kept');

  store.author(dev, 'instance.update', { instanceId: id, desired: 'running' });
  await until('running again', () => record() === 'running' && vmOf(id)?.state === 'running', 10_000, 25);
  assert.equal(vmm.list().length, 1, 'the same VM started again, no second one');

  store.author(dev, 'instance.delete', { instanceId: id });
  await until('deleted', () => record() === 'deleted', 10_000, 25);
  await until('VM gone', () => vmOf(id) === undefined || undefined, 10_000, 25);

  // Every report the controller made is a move the replica lifecycle allows.
  for (let i = 1; i < statuses.length; i++) {
    assert.ok(
      canTransitionReplica(statuses[i - 1] as never, statuses[i] as never),
      `${statuses[i - 1]} -> ${statuses[i]}`,
    );
  }
  assert.deepEqual(statuses.slice(statuses.indexOf('starting')), [
    'starting',
    'running',
    'stopped',
    'starting',
    'running',
    'deleted',
  ]);
});

test('scale to zero: an idle replica with autostop is suspended and reported; a wake resumes it; stop discards it', async () => {
  const { store, dev, vmm, controller, mine, vmOf } = n;
  // The VM's traffic counters stand still (a memory VM has no TAP: this is its probe, as the real one
  // reads a TAP's byte counters); one autostop minute lasts 100 ms here.
  const traffic = vmm.traffic.bind(vmm);
  vmm.traffic = async () => ({ rxBytes: 1000, txBytes: 2000 });
  process.env.FORM_AUTOSTOP_MINUTE_MS = '100';
  try {
    const id = n.createInstance('sleepy');
    await until('running', () => mine(id)?.state === 'running', 10_000, 25);
    assert.equal(vmOf(id)?.state, 'running', 'no autostop: it keeps running');
    store.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 1 });
    await until('suspended', () => mine(id)?.state === 'suspended' && vmOf(id)?.state === 'suspended', 10_000, 25);
    assert.equal(vmOf(id)?.pid, null, 'no VM process while suspended');
    assert.equal(mine(id)?.reason, 'idle: suspended to disk');

    // A connection for it (the VMM's wake gate calls this): resumed and reported running at once.
    await controller.wake(vmOf(id)?.id as string);
    assert.equal(vmOf(id)?.state, 'running');
    assert.equal(mine(id)?.state, 'running');
    store.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 0 });
    await assert.rejects(controller.wake(vmOf(id)?.id as string), (e: unknown) => /not suspended/.test(String(e)));

    // Suspended again, then the owner runs `form manage start` (desired running + wakeAt): woken without
    // a connection. Autostop off first so it does not fall asleep again before the check.
    store.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 1 });
    await until(
      'suspended again',
      () => mine(id)?.state === 'suspended' && vmOf(id)?.state === 'suspended',
      10_000,
      25,
    );
    store.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 0 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(vmOf(id)?.state, 'suspended', 'autostop off does not wake it by itself');
    store.author(dev, 'instance.update', { instanceId: id, desired: 'running', wakeAt: Date.now() });
    await until('woken by start', () => mine(id)?.state === 'running' && vmOf(id)?.state === 'running', 10_000, 25);

    // Suspended again, then the owner stops it: the VM stops (its image discarded), the replica says so.
    store.author(dev, 'instance.update', { instanceId: id, autostopMinutes: 1 });
    await until('suspended a third time', () => vmOf(id)?.state === 'suspended', 10_000, 25);
    store.author(dev, 'instance.update', { instanceId: id, desired: 'stopped' });
    await until('stopped', () => mine(id)?.state === 'stopped' && vmOf(id)?.state === 'stopped', 10_000, 25);
    await assert.rejects(controller.wake(vmOf(id)?.id as string), (e: unknown) =>
      /its owner stopped it/.test(String(e)),
    );
    store.author(dev, 'instance.delete', { instanceId: id });
    await until('VM gone', () => vmOf(id) === undefined || undefined, 10_000, 25);
  } finally {
    vmm.traffic = traffic;
    delete process.env.FORM_AUTOSTOP_MINUTE_MS;
  }
});
