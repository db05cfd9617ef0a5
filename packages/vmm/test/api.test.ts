import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import { limitMiB, TCG_TB_MIB } from '../src/cgroup.ts';
import type { VmmConfig } from '../src/config.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { apiCaseSetup, capacityRefusals, commitRevisions, refusedCreates, runningVmCases } from './api-cases.ts';
import { fixture, integrationOpts, pidsMentioning, qemuVmmConfig, sleep } from './helpers.ts';

const opts = integrationOpts();

describe('VMM service over real QEMU (API, state machine, faults, re-attach)', { skip: opts.skip }, () => {
  let tmp: string;
  let vmm: VmmService;
  let fx: ReturnType<typeof fixture>;
  let vmId = '';

  const config = (over: Partial<VmmConfig> = {}) =>
    qemuVmmConfig(tmp, fx.formpacksDir, {
      healthIntervalMs: 500,
      stopTimeoutMs: 8000,
      capacity: { vcpu: 4, memMiB: 1024, vcpuOvercommit: 4, reserveMemMiB: 0 },
      ...over,
    });

  const { alice, call, ctx } = apiCaseSetup(
    () => vmm,
    () => fx.id,
    () => vmId,
  );

  before(async () => {
    fx = fixture();
    tmp = mkdtempSync('/tmp/fvmm-api-');
    mkdirSync(`${tmp}/images`);
    vmm = await createVmmService({ config: config(), logger: createLogger('silent') });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    const left = pidsMentioning(tmp);
    rmSync(tmp, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no QEMU process left behind');
  });

  test('GET /health reports the driver, accelerator and capacity; OpenAPI lists every route', async () => {
    const h = await call('GET', '/health');
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    assert.ok(['kvm', 'tcg'].includes(h.body.driver.accel));
    assert.deepEqual(h.body.capacity, { vcpu: 4, memMiB: 1024, diskGiB: h.body.capacity.diskGiB });
    const o = await call('GET', '/openapi.json');
    for (const p of [
      '/vms',
      '/vms/{id}',
      '/vms/{id}/start',
      '/vms/{id}/snapshots',
      '/vms/{id}/restore',
      '/vms/{id}/console',
      '/images',
    ]) {
      assert.ok(o.body.paths[p], `openapi has ${p}`);
    }
  });

  test('POST /vms must be signed; bad bodies are 400; unknown Formpack 404', () => refusedCreates(ctx));

  test('POST /vms boots a Formpack; the guest reports ready; GET shows network, health and console', async () => {
    const r = await call('POST', '/vms', { formpack: fx.id, name: 'web-1', wait: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    vmId = r.body.id;
    assert.equal(r.body.state, 'running');
    assert.equal(r.body.ready, true);
    assert.equal(r.body.owner, alice.address);
    assert.equal(r.body.name, 'web-1');
    assert.ok(r.body.bootMs > 0);
    const manifest = JSON.parse(readFileSync(`${fx.formpacksDir}/${fx.id}/manifest.json`, 'utf8'));
    assert.equal(r.body.measurement.kernel, manifest.artifacts.kernel.sha256);
    assert.equal(r.body.measurement.initramfs, manifest.artifacts.initramfs.sha256);
    assert.equal(r.body.measurement.disk, manifest.artifacts.disk.sha256);
    assert.match(r.body.measurement.cmdline, /^[0-9a-f]{64}$/);
    const fwd = r.body.network.forwards as Array<{ guest: number; host: number }>;
    assert.deepEqual(fwd.map((f) => f.guest).sort(), [22, 80]);
    // the entrypoint (busybox httpd on :80) answers through the loopback forward
    const http = fwd.find((f) => f.guest === 80);
    let page = '';
    for (let i = 0; i < 40 && !page.includes('hello'); i++) {
      page = await fetch(`http://127.0.0.1:${http?.host}/`).then(
        (x) => x.text(),
        () => '',
      );
      if (!page.includes('hello')) await sleep(250);
    }
    assert.match(page, /hello from the vmm fixture/);
    const ssh = fwd.find((f) => f.guest === 22);
    const banner = execFileSync('sh', [
      '-c',
      `timeout 5 nc -w 2 127.0.0.1 ${ssh?.host} </dev/null | head -c 7`,
    ]).toString();
    assert.equal(banner, 'SSH-2.0');
    const out = await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'hostname; cat /run/form/vm_id']);
    assert.equal(out.stdout, `web-1\n${vmId}\n`);
    // The host's entropy reaches the guest (virtio-rng), so first-boot key generation does not wait.
    const rng = await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'cat /sys/class/misc/hw_random/rng_current']);
    assert.match(rng.stdout, /^virtio_rng/);
    // Memory stays bounded: under TCG the translation cache is capped (default 1 GiB would outgrow the
    // cgroup and get a busy guest OOM-killed), and the cgroup limit counts it.
    const info = await call('GET', `/vms/${vmId}`);
    const argv = readFileSync(`/proc/${info.body.pid}/cmdline`, 'utf8').split('\0');
    const accelArg = argv[argv.indexOf('-accel') + 1] ?? '';
    if (accelArg.startsWith('tcg')) assert.equal(accelArg, `tcg,tb-size=${TCG_TB_MIB}`);
    const memMiB = Number(argv[argv.indexOf('-m') + 1]);
    const limitFile = [
      `/sys/fs/cgroup/formation-vmm/${vmId}/memory.max`,
      `/sys/fs/cgroup/memory/formation-vmm/${vmId}/memory.limit_in_bytes`,
    ].find((f) => existsSync(f));
    if (limitFile) assert.equal(Number(readFileSync(limitFile, 'utf8')), limitMiB(memMiB) * 2 ** 20);
    let g = await call('GET', `/vms/${vmId}`);
    for (let i = 0; i < 40 && !g.body.health?.entrypoint; i++) {
      await sleep(250);
      g = await call('GET', `/vms/${vmId}`);
    }
    assert.equal(g.body.health.agent, 'ok');
    assert.equal(g.body.health.entrypoint.status, 'running');
    const c = await call('GET', `/vms/${vmId}/console`);
    assert.match(c.body.output, /FORM-INIT-READY/);
    const list = await call('GET', '/vms');
    assert.deepEqual(
      list.body.vms.map((v: { id: string }) => v.id),
      [vmId],
    );
  });

  runningVmCases(ctx);

  test('commit records a hashed revision with the guest thawed after; refused when paused or by another signer', () =>
    commitRevisions(ctx, (n) => `${tmp}/vms/${vmId}/revisions/rev-${n}.qcow2`));

  test('snapshot + restore over the API (guest state rolled back); a full disk fails cleanly', async () => {
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'echo one > /root/m; sync']);
    const s = await call('POST', `/vms/${vmId}/snapshots`, {});
    assert.equal(s.status, 201, JSON.stringify(s.body));
    assert.ok(s.body.memoryBytes > 1_000_000);
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'echo two > /root/m; sync']);
    const r = await call('POST', `/vms/${vmId}/restore`, { snapshot: s.body.id });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, 'running');
    assert.equal((await vmm.manager.exec(vmId, '/bin/cat', ['/root/m'])).stdout, 'one\n');
    assert.equal((await call('POST', `/vms/${vmId}/restore`, { snapshot: 'snap-nope' })).status, 404);
    // full disk: snapshots of this VM land on a 4 MiB tmpfs
    const snapDir = `${tmp}/vms/${vmId}/snapshots`;
    const before = readdirSync(snapDir);
    const small = `${tmp}/small`;
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    try {
      renameSync(snapDir, `${snapDir}.keep`);
      mkdirSync(snapDir);
      execFileSync('mount', ['--bind', small, snapDir]);
      try {
        const full = await call('POST', `/vms/${vmId}/snapshots`, {});
        assert.equal(full.status, 507, JSON.stringify(full.body));
        assert.equal(full.body.error.code, 'DISK_FULL');
        assert.deepEqual(readdirSync(snapDir), [], 'no partial snapshot left');
        const g = await call('GET', `/vms/${vmId}`);
        assert.equal(g.body.state, 'running', 'the VM keeps running');
      } finally {
        execFileSync('umount', [snapDir]);
        rmSync(snapDir, { recursive: true });
        renameSync(`${snapDir}.keep`, snapDir);
      }
    } finally {
      execFileSync('umount', [small]);
    }
    assert.ok(before.length >= 1);
  });

  test('restart (here of a paused VM) boots again on the same disk', async () => {
    await vmm.manager.exec(vmId, '/bin/sh', ['-c', 'echo kept > /root/persist; sync']);
    const before = (await call('GET', `/vms/${vmId}`)).body;
    assert.equal((await call('POST', `/vms/${vmId}/pause`, {})).body.state, 'paused');
    const r = await call('POST', `/vms/${vmId}/restart`, { wait: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, 'running');
    assert.equal(r.body.ready, true);
    assert.notEqual(r.body.pid, before.pid);
    assert.equal((await vmm.manager.exec(vmId, '/bin/cat', ['/root/persist'])).stdout, 'kept\n');
    const c = await call('GET', `/vms/${vmId}/console?bytes=100000`);
    assert.equal(c.body.output.match(/FORM-INIT-READY/g)?.length, 2, 'two boots in the console log');
  });

  test('stop is graceful (clean poweroff through the guest agent)', async () => {
    const s = await call('POST', `/vms/${vmId}/stop`, {});
    assert.equal(s.status, 200);
    assert.equal(s.body.state, 'stopped');
    assert.match(s.body.stateReason, /clean poweroff/);
    assert.equal((await call('POST', `/vms/${vmId}/pause`, {})).status, 409);
    // a stopped VM can be brought back from its latest snapshot (warm start)
    const r = await call('POST', `/vms/${vmId}/restore`, {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, 'running');
    assert.equal(r.body.ready, true);
    assert.equal((await vmm.manager.exec(vmId, '/bin/cat', ['/root/m'])).stdout, 'one\n');
    assert.equal((await call('POST', `/vms/${vmId}/stop`, { force: true })).body.state, 'stopped');
  });

  test('concurrent start calls are serialized (one boots, the other 409, one QEMU); a hung guest is force-stopped', async () => {
    const [a, b] = await Promise.all([call('POST', `/vms/${vmId}/start`, {}), call('POST', `/vms/${vmId}/start`, {})]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409]);
    assert.equal(pidsMentioning(`${tmp}/vms/${vmId}/`).length, 1, 'exactly one QEMU');
    await vmm.manager.waitReady(vmId, 90_000);
    // hang the guest behind the VMM's back, then stop: forced after the timeout
    await (vmm.driver as unknown as { pause(v: unknown): Promise<void> }).pause(
      (vmm.manager as unknown as { vms: Map<string, { driver: unknown }> }).vms.get(vmId)?.driver,
    );
    const s = await call('POST', `/vms/${vmId}/stop`, { timeoutMs: 1500 });
    assert.equal(s.body.state, 'stopped');
    assert.match(s.body.stateReason, /forced stop/);
    assert.equal(pidsMentioning(`${tmp}/vms/${vmId}/`).length, 0);
  });

  test('capacity: a VM that does not fit is refused with the numbers', () => capacityRefusals(ctx));

  test('VMM restart re-attaches to the running VM (same pid, no duplicate); kill -9 from outside is detected', async () => {
    const st = await call('POST', `/vms/${vmId}/start`, { wait: true });
    assert.equal(st.status, 200);
    const pid = st.body.pid as number;
    await vmm.close(); // VMs keep running
    assert.equal(pidsMentioning(`${tmp}/vms/${vmId}/`).length, 1);
    vmm = await createVmmService({ config: config(), logger: createLogger('silent') });
    const g = await call('GET', `/vms/${vmId}`);
    assert.equal(g.body.state, 'running');
    assert.equal(g.body.pid, pid);
    assert.match(g.body.stateReason, /re-attached/);
    assert.equal(pidsMentioning(`${tmp}/vms/${vmId}/`).length, 1, 'no duplicate QEMU');
    assert.equal((await vmm.manager.exec(vmId, '/bin/echo', ['alive'])).stdout, 'alive\n');
    process.kill(pid, 'SIGKILL');
    let v = await call('GET', `/vms/${vmId}`);
    for (let i = 0; i < 100 && v.body.state === 'running'; i++) {
      await sleep(100);
      v = await call('GET', `/vms/${vmId}`);
    }
    assert.equal(v.body.state, 'crashed');
    assert.match(v.body.stateReason, /disappeared|killed/);
    assert.equal(v.body.lastExit.kind, 'killed');
    // a VMM restart while it is dead keeps it crashed, never resurrects or duplicates it
    await vmm.close();
    vmm = await createVmmService({ config: config(), logger: createLogger('silent') });
    assert.equal((await call('GET', `/vms/${vmId}`)).body.state, 'crashed');
  });

  test('VMM restart: a VM found paused mid-boot (a template restore cut short) is ended and booted again, never left paused', async () => {
    const st = await call('POST', `/vms/${vmId}/start`, { wait: true });
    assert.equal(st.status, 200, JSON.stringify(st.body));
    const pid = st.body.pid as number;
    // What a VMM killed during a template restore leaves: its QEMU alive and paused (an incoming
    // migration waits paused), the record still `starting`.
    await (vmm.driver as unknown as { pause(v: unknown): Promise<void> }).pause(
      (vmm.manager as unknown as { vms: Map<string, { driver: unknown }> }).vms.get(vmId)?.driver,
    );
    await vmm.close(); // VMs keep running
    const recordFile = `${tmp}/vms/${vmId}/vm.json`;
    writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(readFileSync(recordFile, 'utf8')), state: 'starting' }));
    vmm = await createVmmService({ config: config(), logger: createLogger('silent') });
    const g = await call('GET', `/vms/${vmId}`);
    assert.equal(g.body.state, 'crashed', JSON.stringify(g.body));
    assert.match(g.body.stateReason, new RegExp(`boot was cut short by a VMM restart \\(found paused, pid ${pid}\\)`));
    assert.deepEqual(pidsMentioning(`${tmp}/vms/${vmId}/`), [], 'its paused QEMU was ended');
    // Booted again (what the node's controller does with a crashed VM), it runs and is ready.
    const again = await call('POST', `/vms/${vmId}/start`, { wait: true });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.state, 'running');
    assert.equal(again.body.ready, true);
    assert.equal((await call('POST', `/vms/${vmId}/stop`, { force: true })).body.state, 'stopped');
  });

  test('images: GET /images; a corrupt or missing image is a clear error; a VM from a .qcow2 image', async () => {
    const fpDir = `${fx.formpacksDir}/${fx.id}`;
    copyFileSync(`${fpDir}/disk.qcow2`, `${tmp}/images/base.qcow2`);
    writeFileSync(`${tmp}/images/corrupt.qcow2`, Buffer.concat([Buffer.from('QFI\xfb'), Buffer.alloc(600)]));
    writeFileSync(`${tmp}/images/empty.img`, '');
    mkdirSync(`${tmp}/images/pack.form`);
    for (const f of ['manifest.json', 'vmlinuz', 'initramfs.img'])
      copyFileSync(`${fpDir}/${f}`, `${tmp}/images/pack.form/${f}`);
    execFileSync('ln', ['-s', `${fpDir}/disk.qcow2`, `${tmp}/images/pack.form/disk.qcow2`]);
    const l = await call('GET', '/images');
    assert.deepEqual(
      l.body.images.map((i: { name: string; format: string }) => `${i.name}:${i.format}`),
      ['base.qcow2:qcow2', 'corrupt.qcow2:qcow2', 'empty.img:raw', 'pack.form:formpack'],
    );
    const bad = await call('POST', '/vms', { image: 'corrupt.qcow2', start: false });
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.equal(bad.body.error.code, 'VM_IMAGE_INVALID');
    assert.equal((await call('POST', '/vms', { image: 'missing.qcow2' })).status, 404);
    const empty = await call('POST', '/vms', { image: 'empty.img', start: false });
    assert.equal(empty.status, 422, JSON.stringify(empty.body));
    assert.match(empty.body.error.message, /is empty/);
    assert.equal((await call('GET', '/vms')).body.vms.length, 1, 'refused images leave no VM behind');
    const ok = await call('POST', '/vms', { image: 'base.qcow2', init: '/sbin/form-init', start: false });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.source.format, 'qcow2');
    const fp = await call('POST', '/vms', { image: 'pack.form', start: false });
    assert.equal(fp.status, 201, JSON.stringify(fp.body));
    // raw and vmdk images get a qcow2 overlay too (the image itself is never written)
    execFileSync('qemu-img', ['convert', '-O', 'raw', `${tmp}/images/base.qcow2`, `${tmp}/images/raw.img`]);
    execFileSync('qemu-img', ['convert', '-O', 'vmdk', `${tmp}/images/base.qcow2`, `${tmp}/images/disk.vmdk`]);
    const ids = [ok.body.id, fp.body.id];
    for (const [image, format] of [
      ['raw.img', 'raw'],
      ['disk.vmdk', 'vmdk'],
    ]) {
      const r = await call('POST', '/vms', { image, init: '/sbin/form-init', start: false });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.source.format, format);
      const info = JSON.parse(
        execFileSync('qemu-img', ['info', '--output=json', `${tmp}/vms/${r.body.id}/qemu/disk.qcow2`]).toString(),
      );
      assert.equal(info['backing-filename-format'], format);
      ids.push(r.body.id);
    }
    for (const id of ids) assert.equal((await call('DELETE', `/vms/${id}`)).status, 200);
  });

  test('restart policy on-failure: a killed QEMU and a dead entrypoint both bring the VM back', async () => {
    const c = await call('POST', '/vms', { formpack: fx.id, name: 'policy', restartPolicy: 'on-failure', wait: true });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const id = c.body.id as string;
    process.kill(c.body.pid, 'SIGKILL');
    let v = await call('GET', `/vms/${id}`);
    for (let i = 0; i < 100 && !(v.body.restarts === 1 && v.body.state === 'running'); i++) {
      await sleep(100);
      v = await call('GET', `/vms/${id}`);
    }
    assert.equal(v.body.state, 'running');
    assert.equal(v.body.restarts, 1);
    assert.equal(v.body.lastExit.kind, 'killed');
    assert.notEqual(v.body.pid, c.body.pid);
    await vmm.manager.waitReady(id, 90_000);
    // make the guest's own supervisor give up, then kill the entrypoint: reported, then restarted by policy
    await vmm.manager.exec(id, '/bin/sh', [
      '-c',
      'touch /run/form/no-restart; kill $(cut -d" " -f2 /run/form/entrypoint.state)',
    ]);
    let sawExited = false;
    for (let i = 0; i < 200; i++) {
      v = await call('GET', `/vms/${id}`);
      if (v.body.health?.entrypoint?.status === 'exited') sawExited = true;
      if (v.body.restarts === 2 && v.body.state === 'running') break;
      await sleep(100);
    }
    assert.ok(sawExited, 'the dead entrypoint was reported on GET /vms/{id}');
    assert.equal(v.body.restarts, 2);
    assert.match(v.body.stateReason, /restarted by policy: entrypoint exited/);
    assert.equal((await call('DELETE', `/vms/${id}`)).status, 200);
  });

  test('DELETE removes the VM, its process and its files', async () => {
    const d = await call('DELETE', `/vms/${vmId}`);
    assert.equal(d.status, 200);
    assert.equal((await call('GET', `/vms/${vmId}`)).status, 404);
    assert.equal(existsSync(`${tmp}/vms/${vmId}`), false);
    // its own process only: a boot template may be building by now under ${tmp}/vms/tpl-…, once the VMM is quiet
    assert.deepEqual(pidsMentioning(`${tmp}/vms/${vmId}/`), []);
  });
});
