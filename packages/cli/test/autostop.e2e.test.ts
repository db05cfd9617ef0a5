// Scale to zero through the real daemon (issue 22): a node in its own namespace (`form node up --netns`),
// hello-server shipped with `AUTOSTOP 1m` and an HTTP HEALTHCHECK in its Formfile. The instance starts
// with that autostop; its idle replica is reported `suspended` and has no QEMU process; a plain HTTP
// request over formnet (`form proxy`: a temporary WireGuard peer, so the request enters the node's
// namespace the way formnet traffic does) waits for the wake and gets HTTP 200; the replica is reported
// running again, is probed healthy every 2 s and still sleeps again (probes are not traffic). A request
// made while the replica is being suspended (its memory being saved) also waits and gets 200.
// `form manage autostop … off` overrides the Formfile.
// One autostop minute lasts MINUTE_MS here (the daemon's FORM_AUTOSTOP_MINUTE_MS).
// Real QEMU (TCG here), real WireGuard, real nftables.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { integrationPrerequisites } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { fdevNamespaces, formCli, qemuPidsOf } from './node-e2e.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const why = integrationPrerequisites('autostop e2e test', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'socat', 'mmdebstrap', 'nft'],
});

const NS = `fh2${randomBytes(3).toString('hex')}`;
// FORM_AUTOSTOP_E2E_PORT_OFFSET: run next to another copy of this test (4400-4499 is this test's range)
const OFFSET = process.env.FORM_AUTOSTOP_E2E_PORT_OFFSET ?? '4420';
/** One autostop minute in the daemon (ms): `AUTOSTOP 1m` suspends after this long without traffic. */
const MINUTE_MS = 8000;
// Made only when the tests run: a skipped describe runs no after-hook to remove them.
const home = why ? '' : mkdtempSync(join(tmpdir(), 'form-autostop-'));
const work = why ? '' : mkdtempSync(join(tmpdir(), 'form-autostop-src-'));
// The daemon logs at info into <home>/node/formationd.log: what to read when this test fails.
const env = {
  FORM_HOME: home,
  FORM_PORT_OFFSET: OFFSET,
  FORM_LOG_LEVEL: 'info',
  FORM_AUTOSTOP_MINUTE_MS: String(MINUTE_MS),
};
const { form, json, waitFor } = formCli(env);

/** hello-server named `sleepy`, with AUTOSTOP and an HTTP HEALTHCHECK probing every 2 s. */
function sleepyApp(): string {
  const dir = join(work, 'sleepy');
  cpSync(join(root, 'examples/hello-server'), dir, { recursive: true });
  const ff = join(dir, 'Formfile');
  const text = readFileSync(ff, 'utf8').replace('NAME hello-server', 'NAME sleepy');
  writeFileSync(
    ff,
    `${text}\nAUTOSTOP 1m\nHEALTHCHECK --interval=2s --timeout=2s --retries=3 --start-period=60s HTTP 8080 /\n`,
  );
  return dir;
}

/** A `form proxy <instance> <port>:8080` (temporary formnet peer); resolves once it forwards. */
async function proxy(instance: string) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const p = spawn(process.execPath, [join(root, 'packages/cli/bin/form.js'), 'proxy', instance, `${port}:8080`], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d;
  });
  p.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
  const deadline = Date.now() + 60_000;
  while (!/Forwarding/.test(out) && p.exitCode === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(out, /Forwarding 127\.0\.0\.1:\d+ -> /, `form proxy did not start: ${out}`);
  return {
    url: `http://127.0.0.1:${port}/`,
    async stop() {
      p.kill('SIGTERM');
      return exited;
    },
  };
}

/** The node's wake gate rules (nft table `form_wake_<bridge>` in the node's namespace; '' when there are none). */
function wakeRules(): string {
  try {
    return execFileSync('ip', ['netns', 'exec', NS, 'nft', 'list', 'table', 'ip', 'form_wake_formbr0'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch {
    return '';
  }
}

/** The VM of the instance as the VMM reports it (a signed read: the owner sees its own VMs). */
async function vmOf(instanceId: string) {
  const { developerKeyPath, loadKey } = await import('@formation/identity');
  const { ApiClient } = await import('@formation/service/client');
  const dev = await loadKey(developerKeyPath(home));
  const { vms } = await new ApiClient(`http://127.0.0.1:${3002 + Number(OFFSET)}`, dev).get<{
    vms: Array<{
      name: string;
      state: string;
      stateReason: string;
      pid: number | null;
      suspended?: { bytes: number; saveMs: number } | null;
    }>;
  }>('/vms');
  const vm = vms.find((v) => v.name.endsWith(`-${instanceId.slice(0, 6)}`));
  assert.ok(vm, `no VM for ${instanceId}: ${JSON.stringify(vms.map((v) => v.name))}`);
  return vm;
}

describe(
  'scale to zero through formationd: AUTOSTOP, suspended, woken by an HTTP request',
  { skip: why || false, concurrency: false },
  () => {
    let id = '';
    let ip = '';
    let lastRequestAt = 0;
    let p: Awaited<ReturnType<typeof proxy>> | undefined;
    const fdevBefore = new Set<string>();

    before(async () => {
      for (const ns of fdevNamespaces()) fdevBefore.add(ns);
      json(await form(['kit', 'init', '--yes', '--json']));
      json(await form(['node', 'up', '--netns', NS, '--json']));
    });

    after(async () => {
      await p?.stop();
      await form(['node', 'down']);
      assert.deepEqual(qemuPidsOf(home, { all: true }), [], 'no QEMU of this data dir left');
      assert.deepEqual(
        fdevNamespaces().filter((ns) => !fdevBefore.has(ns)),
        [],
        'temporary peer namespaces left',
      );
      if (!process.env.FORM_KEEP_TEST_DATA) for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    });

    /** GET / over formnet through the proxy: status, body and how long it took. */
    const visit = async (timeoutMs = 120_000) => {
      const t0 = Date.now();
      const r = await fetch(p?.url ?? '', { signal: AbortSignal.timeout(timeoutMs) });
      const body = await r.text();
      lastRequestAt = Date.now();
      return { status: r.status, body, ms: lastRequestAt - t0 };
    };

    test('shipped with AUTOSTOP 1m: the instance has it; a request made while its idle replica is being suspended waits and gets 200', async (t) => {
      const t0 = Date.now();
      const shipped = json<{ id: string }>(await form(['pack', 'ship', sleepyApp(), '--json']));
      id = shipped.id;
      const tShipped = Date.now();
      // The Formfile's AUTOSTOP is the instance's autostop from the start.
      assert.equal((await waitFor(id, () => true, 'status')).autostopMinutes, 1);
      const running = await waitFor(id, (s) => s.replicas[0]?.state === 'running', 'running', 240_000);
      ip = running.replicas[0]?.formnetIp ?? '';
      assert.match(ip, /^10\.129\.\d+\.\d+$/);
      t.diagnostic(`ship (build) ${tShipped - t0} ms, reported running ${Date.now() - tShipped} ms later`);
      // Nothing talks to it: its idle time runs from its boot, so it goes to sleep soon after. A request
      // that arrives while its memory is being saved (seconds under TCG) must wait for the wake too.
      p = await proxy('sleepy');
      // From the moment the node's wake gate holds the replica's address (nft rules in the node's
      // namespace, set before the guest stops) to the end of the save, a new connection is held.
      await until(
        'the VM suspending with its connections held',
        async () => {
          const vm = await vmOf(id);
          assert.notEqual(vm.state, 'suspended', 'suspended before the test could catch it suspending');
          return vm.state === 'suspending' && wakeRules().includes(`ip daddr ${ip} tcp dport 8080`);
        },
        60_000,
        100,
      );
      const r = await visit();
      t.diagnostic(`request while suspending -> HTTP 200 in ${r.ms} ms (the suspend ends, then the wake)`);
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^Hello from sleepy-/);
      assert.match((await vmOf(id)).stateReason, /resumed from disk/, 'answered by the woken VM');
      await waitFor(
        id,
        (s) => s.replicas[0]?.state === 'running' && s.replicas[0]?.formnetIp === ip,
        'running',
        60_000,
      );
    });

    test('probed every 2 s and healthy, but without visits: suspended (health probes are not traffic), no QEMU', async (t) => {
      let healthyWhileRunning = false;
      const asleep = await waitFor(
        id,
        (s) => {
          const r = s.replicas[0];
          if (r?.state === 'running' && r.health?.status === 'healthy') healthyWhileRunning = true;
          return r?.state === 'suspended';
        },
        'suspended',
        90_000,
        500,
      );
      const idleToSuspended = Date.now() - lastRequestAt;
      assert.ok(idleToSuspended >= MINUTE_MS, `suspended ${idleToSuspended} ms after the last request`);
      assert.ok(healthyWhileRunning, 'its HEALTHCHECK passed (probes reached it) while it went idle');
      assert.equal(asleep.replicas[0]?.formnetIp, ip, 'a suspended replica keeps its address');
      assert.deepEqual(qemuPidsOf(home), [], 'no QEMU while suspended');
      const vm = await vmOf(id);
      assert.deepEqual([vm.state, vm.pid], ['suspended', null]);
      t.diagnostic(
        `last request -> reported suspended ${idleToSuspended} ms (idle time ${MINUTE_MS} ms; ` +
          `save ${vm.suspended?.saveMs} ms, image ${Math.round((vm.suspended?.bytes ?? 0) / 2 ** 20)} MiB)`,
      );
    });

    test('a plain HTTP request over formnet waits for the wake and gets 200; the replica is running again', async (t) => {
      const r = await visit();
      t.diagnostic(`request while suspended -> HTTP 200 in ${r.ms} ms`);
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^Hello from sleepy-/);
      const awake = await waitFor(id, (s) => s.replicas[0]?.state === 'running', 'running again', 60_000);
      assert.equal(awake.replicas[0]?.formnetIp, ip);
      assert.equal(qemuPidsOf(home).length, 1, 'one QEMU again');
      // the next request goes straight to the running VM
      assert.equal((await visit(30_000)).status, 200);
      // a signal ends form proxy after it closed its temporary peer (exit 130, like Ctrl-C)
      const code = await p?.stop();
      p = undefined;
      assert.equal(code, 130);
      const sessions = join(home, 'formnet', 'sessions');
      assert.deepEqual(existsSync(sessions) ? readdirSync(sessions) : [], [], 'temporary peer records left');
    });

    test('form manage autostop off overrides the Formfile', async () => {
      const r = json<{ autostopMinutes: number; changed: boolean }>(
        await form(['manage', 'autostop', 'sleepy', 'off', '--json']),
      );
      assert.deepEqual([r.autostopMinutes, r.changed], [0, true]);
      assert.equal((await waitFor(id, () => true, 'status')).autostopMinutes, 0);
    });
  },
);
