// VMM benchmarks over real QEMU: boot to guest-agent ready and to the SSH banner, pause/resume latency,
// snapshot and restore time + size (256 MiB guest), suspend to disk (time, image size) and resume to the
// first HTTP byte, host RSS per idle VM, and whether KVM or TCG ran.
// Baseline in the same process: restore-to-SSH vs cold boot-to-SSH. Boot snapshots: cold create vs
// create from the Formpack's template (to agent ready and to the SSH banner), the template's build time and size.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createLogger } from '@formation/service';
import { createVmmService } from '@formation/vmm';
import { fixture, integrationBlocker, qemuVmmConfig } from '@formation/vmm/testing';
import { report } from '../report.ts';

const blocked = integrationBlocker();
if (blocked) {
  console.error(`vmm bench skipped: ${blocked}`);
  process.exit(0);
}
const fx = fixture();
const tmp = mkdtempSync('/tmp/fvmm-bench-');
const vmm = await createVmmService({
  config: qemuVmmConfig(tmp, fx.formpacksDir),
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

/** ms until an HTTP GET on 127.0.0.1:port gets its first byte back (retried until it does). */
async function firstHttpByte(port: number, t0: number, timeoutMs = 60_000): Promise<number> {
  while (performance.now() - t0 < timeoutMs) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.0\r\n\r\n'));
      const timer = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 5000);
      const done = (v: boolean) => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      s.once('data', (d) => done(d.toString().startsWith('HTTP/')));
      s.once('error', () => done(false));
      s.once('close', () => done(false));
    });
    if (ok) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no HTTP answer');
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
  // Scale to zero: suspend to disk (QEMU gone), then resume and time the first HTTP byte through the
  // guest's forwarded port 80 (the fixture's busybox httpd).
  const httpPort = m.get(id).network.forwards.find((f) => f.guest === 80)?.host as number;
  await firstHttpByte(httpPort, performance.now());
  t = performance.now();
  const sus = await m.suspend(id);
  report('vmm.suspend_time', performance.now() - t, 'ms', { accel, guestMemMiB: 256, note: 'until QEMU is gone' });
  report('vmm.suspend_image_size', (sus.suspended?.bytes ?? 0) / 2 ** 20, 'MiB', { guestMemMiB: 256 });
  t = performance.now();
  await m.resume(id);
  const resumed = performance.now() - t;
  const firstByte = await firstHttpByte(httpPort, t);
  report('vmm.resume_from_disk', resumed, 'ms', { accel, note: 'image checked and loaded, guest running' });
  report('vmm.resume_to_first_http_byte', firstByte, 'ms', {
    accel,
    vsColdBootSsh: Math.round((firstByte / median(sshs)) * 1000) / 1000,
  });
  t = performance.now();
  const stop = await m.stop(id);
  report('vmm.graceful_stop', performance.now() - t, 'ms', { reason: stop.stateReason });
  await m.destroy(id);
} finally {
  await m.destroyAll();
  await vmm.close({ stopVms: true });
}

// Where a cold boot's time goes (guest console: kernel printk times, the init's uptime marks) and what
// first-boot key generation costs in the guest.
function bootBreakdown(serial: string): Record<string, number | null> {
  const at = (re: RegExp): number | null => {
    const x = re.exec(serial);
    return x ? Math.round(Number(x[1]) * 1000) : null;
  };
  return {
    kernelToInitramfsMs: at(/\[\s*([\d.]+)\] Run \/init as init process/),
    initWaitPointMs: at(/FORM-INIT-WAIT ([\d.]+)/),
    initReadyMs: at(/FORM-INIT-READY ([\d.]+)/),
  };
}

// Boot snapshots: a VMM with bootSnapshots on; the first VM cold-boots and leaves the Formpack's
// template, the second is restored from it and released with its own identity.
const vmm2 = await createVmmService({
  config: qemuVmmConfig(tmp, fx.formpacksDir, { vmDir: `${tmp}/vms2`, bootSnapshots: true }),
  logger: createLogger('silent'),
});
const m2 = vmm2.manager;
try {
  const agentReady2 = async (id: string, t0: number): Promise<number> => {
    await m2.waitReady(id, 120_000);
    for (;;) {
      try {
        await m2.exec(id, '/bin/true', [], 2000);
        return performance.now() - t0;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  let t0 = performance.now();
  const cold = await m2.create({ formpack: fx.id, name: 'bench-cold' });
  const coldAgent = await agentReady2(cold.id, t0);
  const coldSsh = await sshBanner(cold.network.forwards.find((f) => f.guest === 22)?.host as number, t0);
  const keygen = await m2.exec(
    cold.id,
    '/bin/sh',
    [
      '-c',
      'u() { cut -d" " -f1 /proc/uptime; }; a=$(u); dropbearkey -t ed25519 -f /tmp/k >/dev/null 2>&1; b=$(u); FORM_ATTEST_DIR=/tmp/at /usr/sbin/form-attest init; c=$(u); echo "$a $b $c"',
    ],
    30_000,
  );
  const [ka, kb, kc] = keygen.stdout.trim().split(' ').map(Number) as [number, number, number];
  report('vmm.cold_boot_breakdown', coldAgent, 'ms', {
    accel,
    ...bootBreakdown(m2.console(cold.id, 1 << 20)),
    sshHostKeyMs: Math.round((kb - ka) * 1000),
    attestKeyMs: Math.round((kc - kb) * 1000),
    note: 'guest uptimes; agent ready is host time from create',
  });
  t0 = performance.now();
  await m2.templatesIdle();
  const tplMs = performance.now() - t0;
  const tplDir = join(tmp, 'templates', fx.id);
  const qfp = readdirSync(tplDir).find((d) => !d.includes('.') && d !== 'capability.json') ?? '';
  const meta = JSON.parse(readFileSync(join(tplDir, qfp, 'template.json'), 'utf8')) as {
    bootMs: number;
    saveMs: number;
    files: Record<string, { bytes: number }>;
  };
  const bytes = Object.values(meta.files).reduce((n, f) => n + f.bytes, 0);
  report('vmm.template_build', tplMs, 'ms', { accel, bootToWaitPointMs: meta.bootMs, saveMs: meta.saveMs });
  report('vmm.template_size', bytes / 2 ** 20, 'MiB', {
    memoryMiB: Math.round((meta.files['memory.mig']?.bytes ?? 0) / 2 ** 20),
  });
  await m2.destroy(cold.id);
  const snapAgent: number[] = [];
  const snapSsh: number[] = [];
  for (let i = 0; i < 2; i++) {
    t0 = performance.now();
    const v = await m2.create({ formpack: fx.id, name: `bench-snap-${i}` });
    if (v.boot?.kind !== 'snapshot') throw new Error(`not restored from the template: ${v.boot?.fallback}`);
    snapAgent.push(await agentReady2(v.id, t0));
    snapSsh.push(await sshBanner(v.network.forwards.find((f) => f.guest === 22)?.host as number, t0));
    await m2.destroy(v.id);
  }
  report('vmm.cold_create_to_agent_ready', coldAgent, 'ms', { accel });
  report('vmm.snapshot_create_to_agent_ready', median(snapAgent), 'ms', {
    accel,
    runs: snapAgent.map(Math.round),
    vsColdBoot: Math.round((median(snapAgent) / coldAgent) * 1000) / 1000,
  });
  report('vmm.cold_create_to_ssh_banner', coldSsh, 'ms', { accel });
  report('vmm.snapshot_create_to_ssh_banner', median(snapSsh), 'ms', {
    accel,
    runs: snapSsh.map(Math.round),
    vsColdBoot: Math.round((median(snapSsh) / coldSsh) * 1000) / 1000,
  });
} finally {
  await m2.destroyAll();
  await vmm2.close({ stopVms: true });
  rmSync(tmp, { recursive: true, force: true });
}
