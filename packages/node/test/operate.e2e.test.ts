// Operating an instance end to end on a real VM (QEMU, TCG here): the real `form` CLI against a state
// API and a VMM API as a node serves them (the node's key as the VMM's identity and operator, the
// instance's owner as the VM's owner). `form logs` shows the line the app printed, `-f` shows the line it
// prints after a restart, and the earlier lines are still there; another key is refused; `form manage
// events` and `form manage get status <formpack-id>` (seed 000) answer for the instance.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, generateWireGuardKeyPair, saveKey, signRequest } from '@formation/identity';
import { type ProgramRun, requireOrSkip, runProgram, until } from '@formation/interface/testing';
import { vmNameFor } from '@formation/scheduler';
import { apiIdentity, createLogger, setApiIdentity } from '@formation/service';
import { instanceIdOf, openStateStore, type StateStore, startStateService } from '@formation/state';
import { createVmmService, type VmmService } from '@formation/vmm';
import { fixture, integrationBlocker, qemuVmmConfig } from '@formation/vmm/testing';

const why = requireOrSkip('operate e2e test', {
  root: true,
  programs: ['qemu-system-x86_64', 'qemu-img', 'mmdebstrap', 'busybox'],
  check: () => integrationBlocker(),
});

const OFFSET = Number(process.env.FORM_TEST_OPERATE_PORT_OFFSET ?? 520);
const FORM = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));
const SERVING = 'entrypoint: serving /srv/www on :80';

function form(args: string[], env: Record<string, string>): Promise<ProgramRun> {
  return runProgram([process.execPath, FORM, ...args], env);
}

describe('operating an instance on a real VM: form logs, events, status by Formpack id', { skip: why || false }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'form-operate-'));
  const dev = generateKeyPair();
  const stranger = generateKeyPair();
  const node = generateKeyPair();
  const home = join(tmp, 'home');
  const strangerHome = join(tmp, 'stranger');
  let store: StateStore;
  let stateApp: Awaited<ReturnType<typeof startStateService>>['app'];
  let vmm: VmmService;
  let env: Record<string, string>;
  let vmId = '';
  let formpackId = '';
  const name = 'logsapp';

  before(async () => {
    const fx = fixture();
    formpackId = fx.id;
    await saveKey(dev, join(home, 'keys', 'developer.json'));
    await saveKey(stranger, join(strangerHome, 'keys', 'developer.json'));
    const logger = createLogger('silent');
    store = openStateStore({ path: join(tmp, 'state.db') });
    const started = await startStateService({ store, logger, port: 3004 + OFFSET });
    stateApp = started.app;
    store.author(node, 'node.register', {
      name: 'node-e2e',
      capacity: { vcpu: 4, memMiB: 4096, diskGiB: 20 },
      endpoint: `127.0.0.1:${3005 + OFFSET}`,
      p2pPeerId: '12D3KooOperateE2e',
      wgPublicKey: generateWireGuardKeyPair().publicKey,
      formnetRange: '10.129.77.0/24',
    });
    const ts = Date.now();
    const id = instanceIdOf(dev.publicKey, name, ts);
    store.author(
      dev,
      'instance.create',
      { id, formpackId, name, replicas: 1, resources: { vcpu: 1, memMiB: 256, diskGiB: 1 } },
      ts,
    );
    store.author(node, 'instance.claim', { instanceId: id, node: node.publicKey });

    mkdirSync(join(tmp, 'images'));
    vmm = await createVmmService({
      config: qemuVmmConfig(tmp, fx.formpacksDir, {
        healthIntervalMs: 1000,
        stopTimeoutMs: 8000,
        dataDiskMiB: 0,
        capacity: { vcpu: 4, memMiB: 1024, vcpuOvercommit: 4, reserveMemMiB: 0 },
      }),
      logger,
      access: { operators: [node.publicKey], ownerOf: () => dev.address },
      logs: { pollMs: 500 },
    });
    setApiIdentity(vmm.app, node.publicKey);
    await vmm.app.listen({ port: 3002 + OFFSET, host: '127.0.0.1' });
    const vm = await vmm.manager.create({ formpack: formpackId, name: vmNameFor({ id, name }) }, dev.address);
    vmId = vm.id;
    await vmm.manager.waitReady(vmId, 120_000);
    store.author(node, 'instance.status', { instanceId: id, node: node.publicKey, state: 'running', revision: 0 });
    env = {
      FORM_HOME: home,
      FORM_STATE_URL: `http://127.0.0.1:${3004 + OFFSET}`,
      FORM_VMM_URL: `http://127.0.0.1:${3002 + OFFSET}`,
    };
  });

  after(async () => {
    await vmm?.manager.destroyAll().catch(() => undefined);
    await vmm?.close({ stopVms: true });
    await stateApp?.close();
    store?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('form logs shows the line the app printed, labelled with its node', async () => {
    const t0 = Date.now();
    const out = await until(
      'the app line in form logs',
      async () => {
        const r = await form(['logs', name, '--json'], env);
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l));
        return lines.some((l) => l.line === SERVING) ? lines : undefined;
      },
      60_000,
      500,
    );
    const line = out.find((l: { line: string }) => l.line === SERVING);
    assert.equal(line.replica, 'node-e2e');
    assert.equal(line.node, node.publicKey);
    assert.equal(line.stream, 'app');
    process.stdout.write(`# first app line in form logs ${Date.now() - t0} ms after the VM was ready\n`);
  });

  test('form logs -f prints the line the app prints after a restart; the earlier line is kept', async () => {
    const child = spawn(process.execPath, [FORM, 'logs', name, '-f'], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    try {
      await until('the first line in -f', () => out.includes(SERVING), 30_000, 200);
      const before = out.split(SERVING).length - 1;
      assert.equal(before, 1);
      const restart = Date.now();
      await vmm.manager.restart(vmId);
      await vmm.manager.waitReady(vmId, 120_000);
      const ready = Date.now();
      await until('the line printed after the restart in -f', () => out.split(SERVING).length - 1 === 2, 60_000, 200);
      process.stdout.write(
        `# restart to ready ${ready - restart} ms; the app's line shown by -f ${Date.now() - ready} ms after ready\n`,
      );
    } finally {
      if (child.pid) process.kill(child.pid, 'SIGTERM');
    }
    const r = await form(['logs', name], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split(SERVING).length - 1, 2, r.stdout);
    assert.match(r.stdout, /node-e2e/);
  });

  test('another key is refused: the CLI says whose it is, the VMM answers 404', async () => {
    const r = await form(['logs', name], { ...env, FORM_HOME: strangerHome });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /Cannot find instance "logsapp"/);
    const byId = await form(['logs', store.views().instances[0]?.id ?? '', '--json'], {
      ...env,
      FORM_HOME: strangerHome,
    });
    assert.notEqual(byId.code, 0);
    assert.match(byId.stdout + byId.stderr, /AUTH_FORBIDDEN|belongs to/);
    const path = `/vms/${vmId}/logs`;
    const res = await vmm.app.inject({
      method: 'GET',
      url: path,
      headers: signRequest(stranger, { method: 'GET', path, body: '', audience: apiIdentity(vmm.app) }),
    });
    assert.equal(res.statusCode, 404);
    assert.equal(res.body.includes(SERVING), false);
  });

  test('form manage get metrics: each replica with CPU %, memory; a CPU-burning guest shows it', async () => {
    const idle = await form(['manage', 'get', 'metrics', name, '--json'], env);
    assert.equal(idle.code, 0, idle.stderr);
    const [r] = JSON.parse(idle.stdout).replicas;
    assert.equal(r.replica, 'node-e2e');
    assert.equal(r.state, 'running');
    assert.ok(r.rssBytes > 64 * 1048576, `rss ${r.rssBytes}`);
    assert.equal(typeof r.cpuPercent, 'number');
    // Busy-loop in the guest for ~4 s (through the agent) while sampling again.
    const burn = vmm.manager
      .exec(
        vmId,
        '/bin/sh',
        ['-c', 'end=$(($(cut -d. -f1 /proc/uptime)+4)); while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do :; done'],
        20_000,
      )
      .catch(() => undefined);
    await new Promise((ok) => setTimeout(ok, 1000));
    const busy = await form(['manage', 'get', 'metrics', name, '--json'], env);
    await burn;
    assert.equal(busy.code, 0, busy.stderr);
    const b = JSON.parse(busy.stdout).replicas[0];
    process.stdout.write(
      `# cpu idle ${r.cpuPercent}% busy ${b.cpuPercent}% rss ${Math.round(r.rssBytes / 1048576)} MiB\n`,
    );
    const text = await form(['manage', 'get', 'metrics', name], env);
    assert.match(text.stdout, /node-e2e\s+running/);
  });

  test('disk I/O over QMP query-blockstats: a read in the guest shows in get metrics and /metrics', async () => {
    const rootOf = (out: string) =>
      (JSON.parse(out).replicas[0].disks as Array<{ disk: string; readBytes: number }>).find((d) => d.disk === 'root');
    const a = await form(['manage', 'get', 'metrics', name, '--json'], env);
    assert.equal(a.code, 0, a.stderr);
    const before = rootOf(a.stdout);
    assert.ok(before, a.stdout);
    // 8 MiB read straight from the virtual disk (O_DIRECT: not from the guest's page cache).
    const dd = await vmm.manager.exec(
      vmId,
      '/bin/sh',
      ['-c', 'dd if=/dev/vda of=/dev/null bs=1M count=8 skip=16 iflag=direct'],
      30_000,
    );
    assert.equal(dd.exitcode, 0, dd.stderr);
    const b = await form(['manage', 'get', 'metrics', name, '--json'], env);
    const after = rootOf(b.stdout);
    assert.ok((after?.readBytes ?? 0) - before.readBytes >= 8 * 1048576, `${before.readBytes} -> ${after?.readBytes}`);
    assert.ok(JSON.parse(b.stdout).replicas[0].diskAllocatedBytes > 0);
    const path = '/metrics';
    const res = await vmm.app.inject({
      method: 'GET',
      url: path,
      headers: signRequest(node, { method: 'GET', path, body: '', audience: apiIdentity(vmm.app) }),
    });
    assert.match(
      res.body,
      new RegExp(`^formation_vm_disk_read_bytes_total\\{vm="${vmId}",name="[^"]+",disk="root"\\} \\d+$`, 'm'),
    );
    assert.match(res.body, /^formation_vm_disk_allocated_bytes\{/m);
    process.stdout.write(`# disk root read ${before.readBytes} -> ${after?.readBytes} bytes\n`);
  });

  test('form manage events and form manage get status <formpack-id>', async () => {
    const ev = await form(['manage', 'events', name, '--json'], env);
    assert.equal(ev.code, 0, ev.stderr);
    const kinds = JSON.parse(ev.stdout).events.map((e: { kind: string }) => e.kind);
    assert.deepEqual(kinds, ['created', 'claimed', 'running']);
    const st = await form(['manage', 'get', 'status', formpackId, '--json'], env);
    assert.equal(st.code, 0, st.stderr);
    const s = JSON.parse(st.stdout);
    assert.equal(s.name, name);
    assert.equal(s.formpackId, formpackId);
    const other = await form(['manage', 'events', name], { ...env, FORM_HOME: strangerHome });
    assert.notEqual(other.code, 0);
    assert.match(other.stdout + other.stderr, /INSTANCE_NOT_FOUND|Cannot find instance/);
  });
});
