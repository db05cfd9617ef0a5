// VMM benchmarks over real QEMU: boot to guest-agent ready and to the SSH banner, pause/resume latency,
// snapshot and restore time + size (256 MiB guest), host RSS per idle VM, and whether KVM or TCG ran.
// Baseline in the same process: restore-to-SSH vs cold boot-to-SSH.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { createLogger } from '@formation/service';
import { createVmmService, loadVmmConfig } from '@formation/vmm';
import { fixture, integrationBlocker } from '@formation/vmm/testing';
import { report } from '../report.ts';

const blocked = integrationBlocker();
if (blocked) {
  console.error(`vmm bench skipped: ${blocked}`);
  process.exit(0);
}
const fx = fixture();
const tmp = mkdtempSync('/tmp/fvmm-bench-');
const vmm = await createVmmService({
  config: loadVmmConfig(
    {},
    {
      vmDir: `${tmp}/vms`,
      imagesDir: `${tmp}/images`,
      formpacksDir: fx.formpacksDir,
      cacheDir: '/var/tmp/formation-vmm-cache',
      healthIntervalMs: 0,
    },
  ),
  logger: createLogger('silent'),
});
const m = vmm.manager;
const accel = m.fingerprint?.accel ?? 'unknown';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

/** ms until the SSH-2.0 banner arrives on 127.0.0.1:port (slirp accepts early, so read the banner). */
async function sshBanner(port: number, t0: number, timeoutMs = 60_000): Promise<number> {
  while (performance.now() - t0 < timeoutMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      const timer = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 1000);
      s.on('data', (d) => {
        clearTimeout(timer);
        s.destroy();
        resolve(d.toString().startsWith('SSH-2.0'));
      });
      s.on('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
      s.on('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ok) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no SSH banner');
}

async function agentReady(id: string, t0: number): Promise<number> {
  await m.waitReady(id, 90_000);
  for (;;) {
    try {
      await m.exec(id, '/bin/true', [], 2000);
      return performance.now() - t0;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

try {
  const boots: number[] = [];
  const sshs: number[] = [];
  let id = '';
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    const vm = i === 0 ? await m.create({ formpack: fx.id, name: 'bench' }) : await m.start(id);
    id = vm.id;
    const port = vm.network.forwards.find((f) => f.guest === 22)?.host as number;
    boots.push(await agentReady(id, t0));
    sshs.push(await sshBanner(port, t0));
    if (i === 0) await m.stop(id);
  }
  report('vmm.boot_to_agent_ready', median(boots), 'ms', { accel, runs: boots.map(Math.round) });
  report('vmm.boot_to_ssh_banner', median(sshs), 'ms', { accel, runs: sshs.map(Math.round) });

  await new Promise((r) => setTimeout(r, 3000)); // let the guest settle: idle
  const pid = m.get(id).pid as number;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  report('vmm.host_rss_idle_vm', rss, 'MiB', { accel, guestMemMiB: 256 });

  const pauses: number[] = [];
  const resumes: number[] = [];
  for (let i = 0; i < 10; i++) {
    let t = performance.now();
    await m.pause(id);
    pauses.push(performance.now() - t);
    t = performance.now();
    await m.resume(id);
    resumes.push(performance.now() - t);
  }
  report('vmm.pause_latency', median(pauses), 'ms', { accel, runs: 10 });
  report('vmm.resume_latency', median(resumes), 'ms', { accel, runs: 10 });

  let t = performance.now();
  const snap = await m.snapshot(id);
  report('vmm.snapshot_time', performance.now() - t, 'ms', { accel, guestMemMiB: 256 });
  report('vmm.snapshot_size', (snap.memoryBytes + snap.diskBytes) / 2 ** 20, 'MiB', {
    memoryMiB: Math.round(snap.memoryBytes / 2 ** 20),
    diskMiB: Math.round(snap.diskBytes / 2 ** 20),
  });
  t = performance.now();
  await m.restore(id, snap.id);
  report('vmm.restore_time', performance.now() - t, 'ms', { accel, note: 'until the restored guest runs' });
  const port = m.get(id).network.forwards.find((f) => f.guest === 22)?.host as number;
  const sshAfterRestore = await sshBanner(port, t);
  report('vmm.restore_to_ssh_banner', sshAfterRestore, 'ms', {
    accel,
    vsColdBoot: Math.round((sshAfterRestore / median(sshs)) * 1000) / 1000,
  });
  t = performance.now();
  const stop = await m.stop(id);
  report('vmm.graceful_stop', performance.now() - t, 'ms', { reason: stop.stateReason });
  await m.destroy(id);
} finally {
  await m.destroyAll();
  await vmm.close({ stopVms: true });
  rmSync(tmp, { recursive: true, force: true });
}
