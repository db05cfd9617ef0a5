// The manager's pure parts, alone: create-request validation, entrypoint health, accounting, runtime fields.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { BootTemplates, type TemplateDriver, type TemplateWant } from '../src/boot-snapshot.ts';
import type { DriverVm } from '../src/driver.ts';
import type { VmHealth, VmRecord } from '../src/types.ts';
import { gpusGiven, usedResources } from '../src/vm-accounting.ts';
import { sanitize, takenAddresses, vmName, vmResources } from '../src/vm-create.ts';
import { entrypointGaveUp, parseEntrypointState } from '../src/vm-health.ts';
import { ReadyWaiters } from '../src/vm-ready.ts';
import { becameReady, bootBegan, bootRunning, restoredRunning } from '../src/vm-runtime.ts';

const badRequest = (e: unknown): boolean => isFormError(e) && e.code === 'BAD_REQUEST';

describe('create validation', () => {
  test('resources: the request overrides the source; each a positive integer, memory at least 64 MiB', () => {
    const base = { vcpu: 1, memMiB: 256, diskGiB: 1 };
    assert.deepEqual(vmResources(base, { memMiB: 512 }), { vcpu: 1, memMiB: 512, diskGiB: 1 });
    assert.deepEqual(vmResources(base, undefined), base);
    assert.throws(() => vmResources(base, { vcpu: 0 }), badRequest);
    assert.throws(() => vmResources(base, { diskGiB: 1.5 }), badRequest);
    assert.throws(() => vmResources(base, { memMiB: 32 }), /at least 64/);
  });

  test('name: a DNS label; the default comes from the source name and the id', () => {
    assert.equal(vmName(undefined, 'My App_v2', 'vm-0123456789ab'), 'my-app-v2-012345');
    assert.equal(vmName('Web-1', 'x', 'vm-0123456789ab'), 'web-1');
    assert.throws(() => vmName('-bad', 'x', 'vm-0123456789ab'), badRequest);
    assert.throws(() => vmName('a,b', 'x', 'vm-0123456789ab'), badRequest);
    assert.equal(sanitize('***'), 'vm');
  });
});

describe('entrypoint health', () => {
  test('the state file parses; anything else is unknown', () => {
    assert.deepEqual(parseEntrypointState('running 42 1\n'), { status: 'running', pid: 42, restarts: 1 });
    assert.deepEqual(parseEntrypointState('exited 3'), { status: 'exited', code: 3, restarts: 0 });
    assert.deepEqual(parseEntrypointState('what'), { status: 'unknown', detail: 'what' });
    // With the start uptime (4th word) and the guest's uptime now: how long it has run.
    assert.deepEqual(parseEntrypointState('running 42 0 10.50\n', '13.00 1.20\n'), {
      status: 'running',
      pid: 42,
      restarts: 0,
      runningForMs: 2500,
    });
    assert.equal(parseEntrypointState('running 42 0 10.50', '').status, 'running');
    assert.equal('runningForMs' in parseEntrypointState('running 42 0 10.50', ''), false, 'no uptime: unknown');
    assert.equal('runningForMs' in parseEntrypointState('running 42 0', '13.00 1.20'), false, 'older guest');
    assert.equal('runningForMs' in parseEntrypointState('running 42 0 x', '13.00'), false, 'garbage');
    assert.deepEqual(parseEntrypointState('running 42 0 99.0', '13.00'), {
      status: 'running',
      pid: 42,
      restarts: 0,
      runningForMs: 0,
    });
  });

  test('gave up: exited twice with the same restart count, once only', () => {
    const h = (ep: VmHealth['entrypoint'], acted?: boolean): VmHealth => ({
      checkedAt: '',
      agent: 'ok',
      entrypoint: ep,
      acted,
    });
    const exited = { status: 'exited', code: 1, restarts: 2 } as const;
    assert.equal(entrypointGaveUp(undefined, h(exited)), false);
    assert.equal(entrypointGaveUp(h(exited), h(exited)), true);
    assert.equal(entrypointGaveUp(h(exited, true), h(exited)), false);
    assert.equal(entrypointGaveUp(h({ ...exited, restarts: 1 }), h(exited)), false);
    assert.equal(entrypointGaveUp(h({ status: 'running', pid: 1, restarts: 2 }), h(exited)), false);
  });
});

describe('accounting', () => {
  const rec = (state: VmRecord['state'], vcpu: number, gpus?: string[], ip = '10.0.0.2/24'): VmRecord =>
    ({
      state,
      resources: { vcpu, memMiB: 256, diskGiB: 1 },
      network: { ip, mac: `52:54:00:00:00:0${vcpu}`, tap: vcpu > 1 ? `tap${vcpu}` : undefined },
      driver: { spec: { gpus } },
    }) as unknown as VmRecord;

  test('resources count VMs with a process; GPUs stay given to stopped VMs', () => {
    const vms = [rec('running', 2, ['0000:01:00.0']), rec('stopped', 4, ['0000:02:00.0']), rec('paused', 1)];
    assert.deepEqual(usedResources(vms), { vcpu: 3, memMiB: 512, diskGiB: 2 });
    assert.deepEqual(gpusGiven(vms), ['0000:01:00.0', '0000:02:00.0']);
  });

  test('taken addresses: IP without prefix, MACs, TAPs', () => {
    const t = takenAddresses([rec('running', 2, undefined, '10.0.0.5/24'), rec('stopped', 1)]);
    assert.deepEqual([...t.ips], ['10.0.0.5', '10.0.0.2']);
    assert.deepEqual([...t.macs], ['52:54:00:00:00:02', '52:54:00:00:00:01']);
    assert.deepEqual([...t.taps], ['tap2']);
  });
});

describe('ready waiters', () => {
  test('a VM destroyed while someone waits: the wait rejects at the wake, and never holds the process open', async () => {
    const waiters = new ReadyWaiters();
    const records = new Map<string, VmRecord>([['vm-1', { state: 'running', ready: false } as VmRecord]]);
    // A one-hour timeout: were the timer ref'd, this test file would stay alive for it after its last test.
    const p = waiters.wait(
      'vm-1',
      3_600_000,
      (id) => records.get(id),
      () => ({}) as never,
    );
    records.delete('vm-1');
    waiters.wake('vm-1');
    await assert.rejects(p, (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE' && /destroyed/.test(e.message));
  });
  test('a VM that became ready resolves its waiters with its view', async () => {
    const waiters = new ReadyWaiters();
    const rec = { state: 'running', ready: false } as VmRecord;
    const p = waiters.wait(
      'vm-2',
      3_600_000,
      () => rec,
      () => ({ id: 'vm-2' }) as never,
    );
    rec.ready = true;
    waiters.wake('vm-2');
    assert.deepEqual(await p, { id: 'vm-2' });
  });
});

describe('runtime fields', () => {
  test('a boot began: not ready, readiness searched after the console output of earlier boots', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fvmm-rt-'));
    try {
      const serial = join(dir, 'serial.log');
      const rec = {
        ready: true,
        readyAt: '2026-01-01T00:00:00.000Z',
        bootMs: 900,
        serialOffset: 0,
        driver: { paths: { serial } },
      } as unknown as VmRecord;
      bootBegan(rec);
      assert.deepEqual([rec.ready, rec.readyAt, rec.bootMs, rec.serialOffset], [false, undefined, undefined, 0]);
      writeFileSync(serial, 'FORM-INIT-READY\n');
      bootBegan(rec);
      assert.equal(rec.serialOffset, 16, 'the marker of the first boot is not searched');
      bootRunning(rec, 'started');
      assert.deepEqual([rec.state, rec.stateReason, rec.updatedAt], ['running', 'started', rec.startedAt]);
      rec.startedAt = new Date(Date.now() - 1500).toISOString();
      becameReady(rec);
      assert.equal(rec.ready, true);
      assert.ok((rec.bootMs ?? 0) >= 1500 && (rec.bootMs ?? 0) < 60_000, `bootMs ${rec.bootMs}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('restored from a memory image: ready at once only when its guest was ready at the save', () => {
    const rec = { ready: false } as VmRecord;
    restoredRunning(rec, 'resumed', true);
    assert.deepEqual([rec.state, rec.ready, rec.readyAt], ['running', true, rec.startedAt]);
    restoredRunning(rec, 'restored', false);
    assert.deepEqual([rec.stateReason, rec.ready, rec.readyAt], ['restored', false, undefined]);
  });
});

describe('identity release', () => {
  /** Templates over a driver whose guest agent only pings (all release() touches), with `ping`. */
  const templatesPinging = (ping: () => Promise<unknown>): BootTemplates =>
    new BootTemplates({
      driver: { agent: () => ({ ping }) } as unknown as TemplateDriver,
      root: '/nonexistent',
      vmDir: '/nonexistent',
      logger: createLogger('silent'),
    });
  /** The identity of VM `vm-<n>` (release checks its form before it polls). */
  const identity = (n: number) => ({
    ip: `10.129.0.${n + 1}/24`,
    gateway: '10.129.0.1',
    dns: '10.129.0.1',
    name: `vm${n}`,
    id: `vm-${n}`,
    mac: `52:54:00:00:00:0${n}`,
  });

  test('a VM gone before its agent answered: the release stops polling at once (it kept a closed VMM alive ~90 s)', async () => {
    let pings = 0;
    // An agent that never answers (a destroyed VM's socket is gone).
    const templates = templatesPinging(async () => {
      pings++;
      throw new Error('connect ENOENT agent.sock');
    });
    let alive = true;
    // The default timeout (90 s) would be the test's runtime without the check.
    const p = templates.release({ spec: { id: 'vm-1' } } as DriverVm, identity(1), { wanted: () => alive });
    // Polling: two pings failed (a bad identity would have rejected before any; the race ends that too).
    let settled = false;
    p.catch(() => undefined).finally(() => {
      settled = true;
    });
    while (pings < 2 && !settled) await new Promise((r) => setTimeout(r, 10));
    assert.ok(pings >= 2, 'the release polled the agent');
    alive = false;
    await assert.rejects(
      p,
      (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE' && /stopped or destroyed/.test(e.message),
    );
  });

  test('closing the templates ends a pending release too', async () => {
    const templates = templatesPinging(async () => Promise.reject(new Error('no agent')));
    const p = templates.release({ spec: { id: 'vm-2' } } as DriverVm, identity(2));
    await templates.close();
    await assert.rejects(p, (e: unknown) => isFormError(e) && e.code === 'VM_BAD_STATE');
  });
});

describe('template builds', () => {
  const want: TemplateWant = {
    formpackId: 'fp1',
    kernelSha256: 'k',
    initramfsSha256: null,
    diskSha256: null,
    kernel: '/k',
    baseDisk: '/d',
    baseDiskFormat: 'qcow2',
    diskGiB: 1,
    cmdline: 'vm_wait=identity',
    memMiB: 256,
    vcpu: 1,
    dataDiskMiB: 0,
    agentChannel: 'org.qemu.guest_agent.0',
    netMode: 'user',
  };
  const identity = { version: 'x', binarySha256: '0', machine: 'pc', accel: 'tcg', cpu: 'max', devicesSha256: '0' };

  /** Templates in a fresh directory over a driver whose every VM create fails (and is counted). */
  async function withFailingBuilds(
    buildDelayMs: number,
    fn: (templates: BootTemplates, created: () => number) => Promise<void>,
  ): Promise<void> {
    const root = mkdtempSync(join(tmpdir(), 'fvmm-tpl-'));
    try {
      let created = 0;
      const driver = {
        templateIdentity: async () => identity,
        create: async () => {
          created++;
          throw new Error('no VMs here');
        },
      } as unknown as TemplateDriver;
      const templates = new BootTemplates({ driver, root, vmDir: root, logger: createLogger('silent'), buildDelayMs });
      await fn(templates, () => created);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  const cases: Array<{
    name: string;
    buildDelayMs: number;
    run: (t: BootTemplates, created: () => number) => Promise<void>;
  }> = [
    {
      name: 'a build waits buildDelayMs before booting its VM (the first instance starts undisturbed); close ends the wait',
      buildDelayMs: 3_600_000,
      run: async (templates, created) => {
        const built = templates.ensure(want);
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(created(), 0, 'no template VM during the wait');
        // An hour's wait: were close not to end it, this test would time out.
        await templates.close();
        assert.equal(await built, undefined);
        assert.equal(created(), 0, 'nothing booted after close');
      },
    },
    {
      name: 'without a delay the build boots at once',
      buildDelayMs: 0,
      run: async (templates, created) => {
        assert.equal(await templates.ensure(want), undefined, 'a failed build gives no template');
        assert.equal(created(), 1);
        await templates.close();
      },
    },
  ];
  for (const c of cases) test(c.name, () => withFailingBuilds(c.buildDelayMs, c.run));
});
