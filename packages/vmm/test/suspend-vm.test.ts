// Scale to zero on a real VM (TCG, root, issue 22): a VM on the node's bridge is suspended to disk (no
// QEMU left, image 0600), and a connection to its address made while it is suspended is held by the
// wake gate, the VM resumed from its image, and the connection answered by the guest's HTTP server.
// The guest's memory came back (same boot id, a /tmp file and a background process still there): a
// restore, not a reboot. A damaged image is refused and the VM stays suspended.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isFormError, PROBE_SOURCE_PORTS } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { processAlive } from '../src/qemu-driver.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { wakeTableName } from '../src/wake-gate.ts';
import { fixture, integrationOpts, linkedNamespaces, pidsMentioning, qemuVmmConfig } from './helpers.ts';

const opts = integrationOpts();
const tag = String(process.pid % 100000);
const H = `fdz${tag}h`;
const C = `fdz${tag}c`;
const BR = 'fdzbr0';
const CIDR = '10.129.244.0/24';
const ip = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

/** An HTTP GET from the client namespace (curl): status line and body, or the failure; `probe` binds a probe port. */
function get(url: string, maxSec: number, probe = false): Promise<{ code: number; out: string }> {
  const from = probe ? ['--local-port', `${PROBE_SOURCE_PORTS.first}-${PROBE_SOURCE_PORTS.last}`] : [];
  return new Promise((resolve) => {
    const p = spawn(
      'ip',
      ['netns', 'exec', C, 'curl', '-sS', ...from, '-m', String(maxSec), '-o', '-', '-w', '\n%{http_code}', url],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('close', () => {
      const code = Number(out.trim().split('\n').at(-1));
      resolve({ code: Number.isFinite(code) ? code : 0, out });
    });
  });
}

describe('scale to zero: suspend a real VM to disk, wake it on a connection (TCG, root)', { skip: opts.skip }, () => {
  let tmp: string;
  let vmm: VmmService;

  before(async () => {
    // The client sits where formnet traffic comes from (a formnet source routed back the same way).
    linkedNamespaces(
      { netns: H, ifname: `fdz${tag}a`, addr: '10.200.244.1/30' },
      { netns: C, ifname: `fdz${tag}b`, addr: '10.200.244.2/30' },
    );
    ip(['-n', C, 'route', 'add', CIDR, 'via', '10.200.244.1']);
    execFileSync('ip', ['netns', 'exec', H, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    tmp = mkdtempSync('/tmp/fdz-vm-');
    const config = qemuVmmConfig(tmp, fixture().formpacksDir, {
      egress: 'off',
      wakeOnConnect: true,
      network: { mode: 'tap', netns: H, createNetns: false, bridge: BR, cidr: CIDR },
    });
    vmm = await createVmmService({ config, logger: createLogger((process.env.FDZ_LOG ?? 'silent') as 'silent') });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    const left = tmp ? pidsMentioning(tmp) : [];
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    for (const ns of [H, C]) spawnSync('ip', ['netns', 'del', ns]);
    assert.deepEqual(left, []);
  });

  test('suspended: no QEMU, image 0600; a connection meanwhile wakes it and is answered; memory intact', async (t) => {
    const m = vmm.manager;
    const vm = await m.create({ formpack: fixture().id, name: 'sleepy' });
    await m.waitReady(vm.id, 120_000);
    const addr = vm.network.ip.split('/')[0] as string;
    await until(
      'HTTP 200 from the client namespace',
      async () => (await get(`http://${addr}/`, 3)).code === 200,
      60_000,
      500,
    );
    const sh = async (cmd: string) => (await m.exec(vm.id, '/bin/sh', ['-c', cmd], 20_000)).stdout.trim();
    const before = await sh(
      'echo warm-$$ > /tmp/warm; sleep 100000 >/dev/null 2>&1 & echo "$(cat /proc/sys/kernel/random/boot_id) $!"',
    );
    const [bootId, sleeper] = before.split(' ');
    const pid = m.get(vm.id).pid as number;
    // The TAP's byte counters (idle detection) move with traffic.
    const c0 = await m.traffic(vm.id);
    assert.ok(c0 && c0.rxBytes > 0 && c0.txBytes > 0, JSON.stringify(c0));
    assert.equal((await get(`http://${addr}/`, 5)).code, 200);
    const c1 = await m.traffic(vm.id);
    assert.ok(c1 && c1.rxBytes > c0.rxBytes && c1.txBytes > c0.txBytes, JSON.stringify({ c0, c1 }));
    // Health probes (source port in PROBE_SOURCE_PORTS: every node's prober) are answered but not counted:
    // a probed replica still goes idle.
    for (let i = 0; i < 3; i++) assert.equal((await get(`http://${addr}/`, 5, true)).code, 200);
    assert.deepEqual(await m.traffic(vm.id), c1, 'three answered probes: counters unchanged');

    let t0 = performance.now();
    const s = await m.suspend(vm.id);
    t.diagnostic(`suspend ${Math.round(performance.now() - t0)} ms, image ${s.suspended?.bytes} bytes`);
    assert.equal(s.state, 'suspended');
    assert.equal(s.pid, null);
    assert.equal(processAlive(pid), false, 'QEMU is gone while suspended');
    const img = `${tmp}/vms/${vm.id}/suspend/memory.mig`;
    assert.equal(statSync(img).mode & 0o777, 0o600, 'the memory image is private');
    assert.equal(statSync(img).size, s.suspended?.bytes);
    assert.equal(m.capacity().used.memMiB, 0, 'its memory counts as free');
    const rules = execFileSync('ip', ['netns', 'exec', H, 'nft', 'list', 'table', 'ip', wakeTableName(BR)], {
      encoding: 'utf8',
    });
    assert.match(rules, new RegExp(`ip daddr ${addr.replaceAll('.', '\\.')} tcp dport 80 dnat to`));

    // A damaged image is refused; the VM stays suspended and the image is left as it was.
    const good = readFileSync(img);
    writeFileSync(img, good.subarray(0, good.length - 4096));
    await assert.rejects(m.resume(vm.id), (e: unknown) => isFormError(e) && e.code === 'VM_IMAGE_INVALID');
    assert.equal(m.get(vm.id).state, 'suspended');
    assert.equal(statSync(img).size, good.length - 4096);
    writeFileSync(img, good, { mode: 0o600 });

    // A probe while suspended is refused at once and does not wake it.
    const probe = await get(`http://${addr}/`, 10, true);
    assert.equal(probe.code, 0, probe.out);
    assert.match(probe.out, /curl: \(7\)/, 'refused, not held');
    assert.equal(m.get(vm.id).state, 'suspended', 'a probe does not wake it');

    // The connection made while suspended waits for the resume instead of failing.
    t0 = performance.now();
    const r = await get(`http://${addr}/`, 60);
    t.diagnostic(`connection while suspended -> HTTP 200 in ${Math.round(performance.now() - t0)} ms`);
    assert.equal(r.code, 200, r.out);
    assert.equal(m.get(vm.id).state, 'running');
    assert.equal(existsSync(img), false, 'the image is deleted once resumed');
    // The gate's table stays (its conntrack chain keeps held connections translated) without a rule for it.
    const left = execFileSync('ip', ['netns', 'exec', H, 'nft', 'list', 'table', 'ip', wakeTableName(BR)], {
      encoding: 'utf8',
    });
    assert.doesNotMatch(left, /dnat|reject/, 'no wake rules left for a running VM');
    await m.waitReady(vm.id, 10_000);
    const after = await sh(
      `cat /tmp/warm; cat /proc/sys/kernel/random/boot_id; kill -0 ${sleeper} && echo sleeper-alive || echo sleeper-gone`,
    );
    assert.deepEqual(
      after.split('\n').slice(1),
      [bootId, 'sleeper-alive'],
      'same boot, same processes: memory restored',
    );
    assert.match(after, /^warm-\d+/);
    // A later connection goes straight to the running VM.
    assert.equal((await get(`http://${addr}/`, 5)).code, 200);
  });
});
