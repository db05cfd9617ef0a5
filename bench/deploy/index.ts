// Deploy bench: ship -> SUCCESS and ship -> first HTTP 200 (Formpack already built), cold (the first
// instance of the Formpack on the node) and warm (a second instance, `ship --new`, restored from the
// Formpack's boot template: the node runs with FORM_BOOT_SNAPSHOTS=true) and standby (a third, once the
// node has restored its standby VM of that shape: only resumed and released), each with a per-step
// breakdown from the instance's events (op times) and its VM's record (GET /vms: created, launched,
// started, ready); then `form commit` time and the node daemon's idle memory. Uses its own FORM_HOME,
// port offset and netns. FORM_BENCH_BOOT_SNAPSHOTS=false: the cold run only, snapshots off.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { developerKeyPath, loadKey } from '@formation/identity';
import { ApiClient } from '@formation/service/client';
import { report } from '../report.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'form-bench-deploy-'));
const ns = `fbd${randomBytes(3).toString('hex')}`;
const OFFSET = 70;
const snapshots = process.env.FORM_BENCH_BOOT_SNAPSHOTS !== 'false';
const env = {
  ...process.env,
  FORM_HOME: home,
  FORM_PORT_OFFSET: String(OFFSET),
  FORM_LOG_LEVEL: process.env.FORM_BENCH_LOG_LEVEL ?? 'silent', // the node's log: <FORM_HOME>/node/formationd.log
  FORM_BOOT_SNAPSHOTS: String(snapshots),
};
const example = join(root, 'examples/hello-server');

function form(args: string[], extra: Record<string, string> = {}): string {
  const r = spawnSync(process.execPath, [join(root, 'packages/cli/bin/form.js'), ...args], {
    env: { ...env, ...extra },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`form ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface VmView {
  id: string;
  network: { ip: string };
  createdAt: string;
  startedAt: string | null;
  readyAt: string | null;
  boot: {
    kind: 'cold' | 'snapshot';
    launchedAt: string;
    readyMs: number | null;
    fallback: string | null;
    standby?: boolean;
  } | null;
}

interface Deploy {
  id: string;
  formpackId: string;
  ship0: number;
  successAt: number;
  httpAt: number;
  ip: string;
}

/** Whether the node's VMM holds a standby VM restored and paused (its record, under FORM_HOME/vms). */
function standbyReady(): boolean {
  const dir = join(home, 'vms');
  if (!existsSync(dir)) return false;
  return readdirSync(dir).some((id) => {
    try {
      const r = JSON.parse(readFileSync(join(dir, id, 'vm.json'), 'utf8')) as { standby?: boolean; state?: string };
      return r.standby === true && r.state === 'paused';
    } catch {
      return false;
    }
  });
}

/** `form <args>` without blocking the event loop (the status poll runs beside the HTTP poll). */
function formAsync(args: string[]): Promise<string> {
  return new Promise((ok, fail) => {
    const p = spawn(process.execPath, [join(root, 'packages/cli/bin/form.js'), ...args], { env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.on('close', (code) => (code === 0 ? ok(out) : fail(new Error(`form ${args.join(' ')} failed: ${err}`))));
  });
}

/**
 * Ship (a new instance with `--new`), then poll for SUCCESS (the CLI, ~0.5 s a call) and, beside it,
 * for the first HTTP 200 on the replica's formnet address every 100 ms, so the CLI's start-up time does
 * not delay when the answer is seen.
 */
async function deploy(extraArgs: string[]): Promise<Deploy> {
  const ship0 = Date.now();
  const shipped = JSON.parse(await formAsync(['pack', 'ship', example, ...extraArgs, '--json'])) as {
    id: string;
    formpackId: string;
  };
  let ip = '';
  let successAt = 0;
  let httpAt = 0;
  let failure: Error | undefined;
  const statusLoop = (async () => {
    while (!successAt && !failure && Date.now() - ship0 < 300_000) {
      const s = JSON.parse(await formAsync(['manage', 'get', 'status', shipped.id, '--json'])) as {
        status: string;
        replicas: Array<{ formnetIp: string | null }>;
      };
      ip ||= s.replicas[0]?.formnetIp ?? '';
      if (s.status === 'SUCCESS') successAt = Date.now();
      if (s.status === 'FAILURE') failure = new Error(`deployment failed: ${JSON.stringify(s)}`);
      await sleep(100);
    }
  })();
  while (!httpAt && !failure && Date.now() - ship0 < 300_000) {
    // The app may answer before the replica is reported running (the node waits for its entrypoint to settle).
    if (ip) {
      const r = spawnSync(
        'ip',
        ['netns', 'exec', ns, 'curl', '-fsS', '--connect-timeout', '0.3', '-m', '2', `http://${ip}:8080/`],
        {
          encoding: 'utf8',
        },
      );
      if (r.status === 0 && r.stdout.startsWith('Hello')) httpAt = Date.now();
    }
    await sleep(100);
  }
  await statusLoop;
  if (failure) throw failure;
  if (!successAt || !httpAt) throw new Error(`no SUCCESS and HTTP 200 within 300 s (${shipped.id})`);
  return { id: shipped.id, formpackId: shipped.formpackId, ship0, successAt, httpAt, ip };
}

/**
 * Where ship → HTTP 200 went, in ms, from recorded times only: the instance's events (op times, the
 * CLI's and the node's clocks: one machine here) and its VM's record on the node's VMM.
 */
async function breakdown(d: Deploy, vmm: ApiClient): Promise<{ steps: Record<string, number>; vm: VmView }> {
  const { events } = JSON.parse(form(['manage', 'events', d.id, '--json'])) as {
    events: Array<{ at: number; kind: string }>;
  };
  const at = (kind: string): number => {
    const e = events.find((x) => x.kind === kind);
    if (!e) throw new Error(`no ${kind} event for ${d.id}: ${JSON.stringify(events)}`);
    return e.at;
  };
  const { vms } = await vmm.request<{ vms: VmView[] }>('GET', '/vms');
  const vm = vms.find((v) => v.network.ip.split('/')[0] === d.ip);
  if (!vm?.boot || !vm.startedAt || !vm.readyAt) throw new Error(`no booted VM at ${d.ip}: ${JSON.stringify(vm)}`);
  const created = Date.parse(vm.createdAt);
  const launched = Date.parse(vm.boot.launchedAt);
  const started = Date.parse(vm.startedAt);
  const ready = Date.parse(vm.readyAt);
  return {
    vm,
    steps: {
      // the CLI: start, find the built Formpack, sign and submit instance.create
      ship_to_create_op: at('created') - d.ship0,
      // the node's controller: next reconcile, placement, instance.claim
      create_op_to_claim_op: at('claimed') - at('created'),
      // the controller's next round: report booting, VMM create (address, overlay disks, measurement)
      claim_op_to_vm_created: created - at('claimed'),
      // VMM: TAP on the bridge, state files, then QEMU is launched
      vm_created_to_launch: launched - created,
      // QEMU started (cold) or memory restored from the template (snapshot)
      launch_to_qemu_running: started - launched,
      // the guest: kernel, init (identity released over the agent), keys, sshd → FORM-INIT-READY
      qemu_running_to_ready: ready - started,
      // the entrypoint starts and listens; the first request over the node's bridge answers
      ready_to_http_200: d.httpAt - ready,
      // (beside it) the node reports running once the entrypoint has run 2 s and a health round saw it
      ready_to_running_op: at('running') - ready,
    },
  };
}

/**
 * The guest's own steps from its serial log (form-init prints `FORM-INIT-STEP <name> <uptime>`), in
 * seconds since the previous mark: where the time between "QEMU running" and "ready" goes.
 */
function guestSteps(vmId: string): Record<string, number> {
  const log = join(home, 'vms', vmId, 'qemu', 'serial.log');
  if (!existsSync(log)) return {};
  const out: Record<string, number> = {};
  let prev: number | undefined;
  for (const m of readFileSync(log, 'latin1').matchAll(/FORM-INIT-(?:STEP (\S+)|(READY)) ([\d.]+)/g)) {
    const at = Number(m[3]);
    const name = (m[1] ?? m[2] ?? '').toLowerCase();
    if (prev !== undefined) out[name] = Math.round((at - prev) * 1000) / 1000;
    prev = at;
  }
  return out;
}

function printDeploy(
  kind: 'cold' | 'warm' | 'standby',
  d: Deploy,
  b: { steps: Record<string, number>; vm: VmView },
): void {
  report(`deploy.${kind}.ship_to_success`, (d.successAt - d.ship0) / 1000, 's');
  report(`deploy.${kind}.ship_to_http_200`, (d.httpAt - d.ship0) / 1000, 's', {
    boot: b.vm.boot?.kind,
    fallback: b.vm.boot?.fallback ?? undefined,
  });
  for (const [step, ms] of Object.entries(b.steps)) report(`deploy.${kind}.step.${step}`, ms / 1000, 's');
  for (const [step, s] of Object.entries(guestSteps(b.vm.id))) report(`deploy.${kind}.guest.${step}`, s, 's');
}

try {
  if (process.getuid?.() !== 0) throw new Error('the deploy bench needs root (namespaces, TAP, WireGuard)');
  form(['kit', 'init', '--yes']);
  const t0 = Date.now();
  form(['node', 'up', '--netns', ns]);
  report('deploy.node_up', (Date.now() - t0) / 1000, 's');
  form(['pack', 'build', example]); // not timed: the Formpack is built before shipping
  const vmm = new ApiClient(`http://127.0.0.1:${3002 + OFFSET}`, await loadKey(developerKeyPath(home)));

  const cold = await deploy([]);
  const coldB = await breakdown(cold, vmm);
  printDeploy('cold', cold, coldB);
  // The earlier names, kept for comparisons with older runs.
  report('deploy.ship_to_success', (cold.successAt - cold.ship0) / 1000, 's', { target: 20 });
  report('deploy.ship_to_http_200', (cold.httpAt - cold.ship0) / 1000, 's', { target: 20, stretch: 5 });

  if (snapshots) {
    // The template is made after the first VM is ready; a warm ship needs it.
    const fpDir = join(home, 'templates', cold.formpackId);
    const w0 = Date.now();
    const hasTemplate = () =>
      existsSync(fpDir) &&
      readdirSync(fpDir).some((n) => !n.endsWith('.build') && existsSync(join(fpDir, n, 'template.json')));
    while (!hasTemplate() && Date.now() - w0 < 300_000) await sleep(250);
    if (!hasTemplate()) throw new Error(`no boot template in ${fpDir} within 300 s`);
    const meta = JSON.parse(
      readFileSync(
        join(
          fpDir,
          readdirSync(fpDir).find((n) => existsSync(join(fpDir, n, 'template.json'))) as string,
          'template.json',
        ),
        'utf8',
      ),
    ) as { bootMs: number; saveMs: number; files: Record<string, { bytes: number }> };
    report(
      'deploy.template_ready_after_cold_ready',
      (Date.now() - Date.parse(coldB.vm.readyAt as string)) / 1000,
      's',
      {
        templateBootMs: meta.bootMs,
        templateSaveMs: meta.saveMs,
        memoryMiB: Math.round((meta.files['memory.mig']?.bytes ?? 0) / 2 ** 20),
      },
    );
    const warm = await deploy(['--new']);
    const warmB = await breakdown(warm, vmm);
    printDeploy('warm', warm, warmB);
    const coldMs = cold.httpAt - cold.ship0;
    const warmMs = warm.httpAt - warm.ship0;
    report('deploy.warm_vs_cold.ship_to_http_200', warmMs / coldMs, 'ratio', {
      coldS: coldMs / 1000,
      warmS: warmMs / 1000,
      warmBoot: warmB.vm.boot?.kind,
      target: 'warm ≤ 5 s',
    });
    for (const step of Object.keys(coldB.steps)) {
      const c = coldB.steps[step] as number;
      const w = warmB.steps[step] as number;
      report(`deploy.warm_vs_cold.step.${step}`, c > 0 ? w / c : 0, 'ratio', { coldS: c / 1000, warmS: w / 1000 });
    }

    // The node keeps one standby VM of the shape it ran last (restored paused once the node is quiet):
    // the next ship of it only resumes that VM. Waited for through the VMM's records on disk.
    const s0 = Date.now();
    while (!standbyReady() && Date.now() - s0 < 120_000) await sleep(250);
    if (!standbyReady()) throw new Error('no standby VM within 120 s');
    report('deploy.standby_ready_after_warm_ready', (Date.now() - Date.parse(warmB.vm.readyAt as string)) / 1000, 's');
    const sb = await deploy(['--new']);
    const sbB = await breakdown(sb, vmm);
    printDeploy('standby', sb, sbB);
    const sbMs = sb.httpAt - sb.ship0;
    report('deploy.standby_vs_cold.ship_to_http_200', sbMs / coldMs, 'ratio', {
      coldS: coldMs / 1000,
      warmS: warmMs / 1000,
      standbyS: sbMs / 1000,
      standby: sbB.vm.boot?.standby === true,
      target: 'warm ≤ 5 s',
    });
  }

  const c0 = Date.now();
  const c = JSON.parse(form(['commit', cold.id, '--json'])) as { frozenMs: number; bytes: number };
  report('deploy.commit', (Date.now() - c0) / 1000, 's', { guestFrozenMs: c.frozenMs, revisionBytes: c.bytes });

  await sleep(5000);
  const pid = Number(readFileSync(join(home, 'node', 'formationd.pid'), 'utf8').trim());
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  report('deploy.daemon_idle_rss', rss, 'MiB');
  const accel = (JSON.parse(readFileSync(join(home, 'node', 'node.json'), 'utf8')) as { accel: string }).accel;
  report('deploy.accelerator_is_kvm', accel === 'kvm' ? 1 : 0, 'bool', { accel });
} finally {
  spawnSync(process.execPath, [join(root, 'packages/cli/bin/form.js'), 'node', 'down'], { env });
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
  // Formpacks, VM disks and boot templates: hundreds of MiB (FORM_KEEP_BENCH_DATA=1 keeps them).
  if (!process.env.FORM_KEEP_BENCH_DATA) rmSync(home, { recursive: true, force: true });
}
