import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { ApiClient } from '@formation/service';
import { freePort } from '../src/network.ts';
import { fixture, integrationOpts, pidsMentioning, sleep } from './helpers.ts';

const opts = integrationOpts();
const MAIN = new URL('../src/main.ts', import.meta.url).pathname;

interface VmBody {
  id: string;
  state: string;
  pid: number | null;
  ready: boolean;
  stateReason: string;
  source: { kind: string; format?: string };
  network: { forwards: Array<{ guest: number; host: number }> };
}

describe('standalone VMM process: plain image boot, kill -9 of the VMM, re-attach', { skip: opts.skip }, () => {
  let tmp: string;
  let port: number;
  let proc: ChildProcess | undefined;
  const key = generateKeyPair();
  let api: ApiClient;

  async function startVmm(): Promise<void> {
    proc = spawn(process.execPath, [MAIN, '--port', String(port)], {
      env: {
        ...process.env,
        VMM_VM_DIR: `${tmp}/vms`,
        VMM_IMAGES_DIR: `${tmp}/images`,
        VMM_LOG_LEVEL: 'warn',
        VMM_CONFIG_PATH: `${tmp}/vmm.json`,
        WAIT_FOR: '',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    for (let i = 0; i < 100; i++) {
      try {
        await api.get('/health');
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error('VMM did not come up');
  }

  before(async () => {
    const fx = fixture();
    tmp = mkdtempSync('/tmp/fvmm-main-');
    mkdirSync(`${tmp}/images`);
    copyFileSync(`${fx.formpacksDir}/${fx.id}/disk.qcow2`, `${tmp}/images/debian.qcow2`);
    const cfg = { formpacksDir: fx.formpacksDir, cacheDir: '/var/tmp/formation-vmm-cache', healthIntervalMs: 0 };
    process.getBuiltinModule('node:fs').writeFileSync(`${tmp}/vmm.json`, JSON.stringify(cfg));
    port = await freePort();
    api = new ApiClient(`http://127.0.0.1:${port}`, key);
    await startVmm();
  });

  after(async () => {
    try {
      const { vms } = await api.get<{ vms: VmBody[] }>('/vms');
      for (const v of vms) await api.delete(`/vms/${v.id}`);
    } catch {
      // VMM gone
    }
    proc?.kill('SIGKILL');
    for (const pid of pidsMentioning(tmp)) process.kill(pid, 'SIGKILL');
    const left = pidsMentioning(tmp);
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(left, []);
  });

  test('a .qcow2 image boots with the host kernel + generated initramfs; survives kill -9 of the VMM', async () => {
    const imgs = await api.get<{ images: Array<{ name: string }> }>('/images');
    assert.deepEqual(
      imgs.images.map((i) => i.name),
      ['debian.qcow2'],
    );
    const vm = await api.request<VmBody>(
      'POST',
      '/vms',
      { image: 'debian.qcow2', init: '/sbin/form-init', wait: true },
      {
        timeoutMs: 120_000,
      },
    );
    assert.equal(vm.state, 'running');
    assert.equal(vm.ready, true);
    assert.equal(vm.source.format, 'qcow2');
    const pid = vm.pid as number;
    proc?.kill('SIGKILL'); // the VMM dies hard; its VM must not
    await new Promise((r) => proc?.once('exit', r));
    assert.equal(pidsMentioning(`${tmp}/vms/${vm.id}/`).length, 1, 'the VM outlives the VMM');
    await startVmm();
    const again = await api.get<VmBody>(`/vms/${vm.id}`);
    assert.equal(again.state, 'running');
    assert.equal(again.pid, pid, 're-attached to the same QEMU');
    assert.match(again.stateReason, /re-attached/);
    assert.equal(pidsMentioning(`${tmp}/vms/${vm.id}/`).length, 1, 'no duplicate');
    const st = await api.post<VmBody>(`/vms/${vm.id}/stop`, {});
    assert.equal(st.state, 'stopped');
    assert.match(st.stateReason, /clean poweroff/);
    const other = new ApiClient(`http://127.0.0.1:${port}`, generateKeyPair());
    await assert.rejects(other.delete(`/vms/${vm.id}`), /belongs to/);
  });
});
