import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { after, test } from 'node:test';
import { createLogger } from '@formation/service';
import { freePort } from '../src/network.ts';
import { QemuDriver, qemuUidFor } from '../src/qemu-driver.ts';
import { fixture, fixtureBoot, integrationOpts, testVmSpec } from './helpers.ts';

/**
 * A real boot (TCG, ~10 s) checking what a QEMU process may do once the guest runs: its own
 * unprivileged uid/gid (not root, not another VM's), the seccomp sandbox on, and that snapshot/restore
 * (migration over a unix socket, no `exec:`) still work under both.
 */
const opts = integrationOpts();
const tmp = mkdtempSync('/tmp/fvmm-priv-');
after(() => rmSync(tmp, { recursive: true, force: true }));

function status(pid: number): Record<string, string> {
  return Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .map((l) => l.split(':\t'))
      .filter((kv) => kv.length === 2)
      .map(([k, v]) => [k, (v as string).trim()]),
  );
}

test(
  'QEMU runs sandboxed as its VM’s own unprivileged uid; boot, agent, snapshot and restore work',
  { ...opts, timeout: 240_000 },
  async (t) => {
    const fx = fixture();
    const driver = new QemuDriver({ logger: createLogger(process.env.FORM_LOG_LEVEL ?? 'silent'), accel: 'tcg' });
    const id = `priv-${process.pid}`;
    const vm = await driver.create(testVmSpec(id, tmp, fixtureBoot(fx), [{ guest: 22, host: await freePort() }]));
    try {
      const t0 = Date.now();
      await driver.start(vm);
      const agent = driver.agent(vm);
      for (;;) {
        try {
          await agent.ping(2000);
          break;
        } catch {
          if (Date.now() - t0 > 180_000) throw new Error('guest agent never answered');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      const bootMs = Date.now() - t0;
      const uid = qemuUidFor(id);
      const st = status(vm.pid as number);
      assert.equal(st.Uid, `${uid}\t${uid}\t${uid}\t${uid}`, 'real, effective, saved and fs uid');
      assert.equal(st.Gid, `${uid}\t${uid}\t${uid}\t${uid}`);
      assert.equal(st.CapEff, '0000000000000000', 'no capabilities');
      assert.equal(st.Seccomp, '2', 'seccomp filter mode');
      const argv = readFileSync(`/proc/${vm.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(
        argv.includes('on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny'),
        argv.join(' '),
      );
      const snap = `${tmp}/${id}-snap`;
      const info = await driver.snapshot(vm, snap);
      assert.ok(info.memoryBytes > 0);
      assert.equal(await driver.status(vm), 'running', 'a running VM keeps running after a snapshot');
      await driver.restore(vm, snap);
      assert.equal(await driver.status(vm), 'running');
      await agent.ping(5000);
      assert.equal(status(vm.pid as number).Uid?.split('\t')[0], String(uid), 'the restored QEMU dropped too');
      t.diagnostic(`boot to agent ${bootMs} ms, snapshot ${info.totalMs} ms`);
    } finally {
      await driver.destroy(vm);
      await driver.close();
    }
  },
);
