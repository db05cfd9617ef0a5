// Boot snapshots through the real daemon (issue 22): a node in its own namespace started with
// FORM_BOOT_SNAPSHOTS=true, hello-server shipped (a cold boot that leaves the Formpack's template under
// <data dir>/templates, made after that VM is ready), then a second instance of the same Formpack (`form pack ship --new`) whose VM
// is restored from that template: GET /vms/:id on the node's VMM API says `boot.kind: 'snapshot'`, it
// answers HTTP on its formnet address, and `form attest` passes for it (the measured command line is the
// instance-neutral one, the same for both). The template VM is never listed as a VM of the node.
// Real QEMU (TCG here), real WireGuard, real SQLite.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { developerKeyPath, loadKey } from '@formation/identity';
import { integrationPrerequisites } from '@formation/interface';
import { until } from '@formation/interface/testing';
import { ApiClient } from '@formation/service/client';
import { formCli, qemuPidsOf } from './node-e2e.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const example = join(root, 'examples/hello-server');
const why = integrationPrerequisites('boot snapshot e2e test', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'socat', 'mmdebstrap'],
});

const NS = `fh1${randomBytes(3).toString('hex')}`;
// FORM_BOOTSNAP_E2E_PORT_OFFSET: run next to another copy of this test (4300-4399 is this test's range)
const OFFSET = process.env.FORM_BOOTSNAP_E2E_PORT_OFFSET ?? '4330';
// Made only when the tests run: a skipped describe runs no after-hook to remove them.
const home = why ? '' : mkdtempSync(join(tmpdir(), 'form-bootsnap-'));
// The daemon logs at info into <home>/node/formationd.log: what to read when this test fails.
const env = { FORM_HOME: home, FORM_PORT_OFFSET: OFFSET, FORM_LOG_LEVEL: 'info', FORM_BOOT_SNAPSHOTS: 'true' };
const { form, json, waitFor } = formCli(env);

interface Vm {
  id: string;
  name: string;
  state: string;
  network: { ip: string };
  source: { kind: string; id: string };
  boot: { kind: 'cold' | 'snapshot'; launchedAt: string; readyMs: number | null; fallback: string | null } | null;
}

describe('boot snapshots in formationd', { skip: why || false, concurrency: false }, () => {
  let vmm: ApiClient;
  let fpId = '';
  const ips: string[] = [];
  let firstId = '';

  /** The VM (on the node's VMM API, as its owner sees it) that holds formnet address `ip`. */
  const vmAt = async (ip: string): Promise<Vm> => {
    const { vms } = await vmm.request<{ vms: Vm[] }>('GET', '/vms');
    const vm = vms.find((v) => v.network.ip.split('/')[0] === ip);
    assert.ok(vm, `a VM at ${ip} among ${JSON.stringify(vms.map((v) => [v.id, v.network.ip]))}`);
    return vmm.request<Vm>('GET', `/vms/${vm.id}`);
  };

  const http = (ip: string): Promise<string> =>
    until(
      `HTTP 200 from ${ip}:8080`,
      () => {
        const r = spawnSync('ip', ['netns', 'exec', NS, 'curl', '-fsS', '-m', '3', `http://${ip}:8080/`], {
          encoding: 'utf8',
        });
        return r.status === 0 ? r.stdout : undefined;
      },
      60_000,
      250,
    );

  const attest = async (ref: string) => {
    const r = await form(['attest', ref, '--json']);
    const out = JSON.parse(r.stdout || '{}') as {
      ok?: boolean;
      replicas?: Array<{ ok: boolean; reason: string; checks: Array<{ name: string; ok: boolean; detail: string }> }>;
    };
    assert.equal(r.code, 0, `form attest ${ref}: ${r.stderr}\n${r.stdout}`);
    assert.equal(out.ok, true);
    return out.replicas ?? [];
  };

  before(async () => {
    json(await form(['kit', 'init', '--yes', '--json']));
    json(await form(['node', 'up', '--netns', NS, '--json']));
    vmm = new ApiClient(`http://127.0.0.1:${3002 + Number(OFFSET)}`, await loadKey(developerKeyPath(home)));
  });

  after(async () => {
    await form(['node', 'down']);
    assert.deepEqual(
      qemuPidsOf(home, { all: true }),
      [],
      'no QEMU of this node left (template and standby VMs included)',
    );
    const nsList = execFileSync('ip', ['netns', 'list']).toString();
    assert.ok(!nsList.includes(NS), `namespace ${NS} left behind`);
    if (!process.env.FORM_KEEP_TEST_DATA) rmSync(home, { recursive: true, force: true });
  });

  test('the first instance cold-boots and leaves its Formpack’s template (0600, never listed as a VM)', async () => {
    const shipped = json<{ id: string; formpackId: string }>(await form(['pack', 'ship', example, '--json']));
    fpId = shipped.formpackId;
    firstId = shipped.id;
    const s = await waitFor(shipped.id, (x) => x.status !== 'PENDING', 'SUCCESS', 240_000);
    assert.equal(s.status, 'SUCCESS', JSON.stringify(s));
    const ip = s.replicas[0]?.formnetIp ?? '';
    ips.push(ip);
    const vm = await vmAt(ip);
    // Nothing is known of this Formpack yet: a classic boot (identity on the command line); whether its
    // guest can wait for its identity is learnt from the template boot that follows.
    assert.equal(vm.boot?.kind, 'cold');
    // The template is built after the first VM is ready (never competing with its boot).
    const fpDir = join(home, 'templates', fpId);
    const dir = await until(
      'the template',
      () => {
        if (!existsSync(fpDir)) return undefined;
        const d = readdirSync(fpDir).find((n) => !n.endsWith('.build') && n !== 'capability.json');
        return d && existsSync(join(fpDir, d, 'template.json')) ? join(fpDir, d) : undefined;
      },
      180_000,
      500,
    );
    assert.equal(statSync(join(dir, 'memory.mig')).mode & 0o777, 0o600);
    assert.equal(statSync(fpDir).mode & 0o777, 0o700);
    const { vms } = await vmm.request<{ vms: Vm[] }>('GET', '/vms');
    assert.deepEqual(
      vms.map((v) => v.id),
      [vm.id],
      'the template VM is not a VM of the node (the controller never sees it)',
    );
  });

  test('a second instance of the Formpack is restored from the template, answers HTTP and attests', async () => {
    assert.ok(fpId, 'the first test shipped');
    const shipped = json<{ id: string; created: boolean }>(await form(['pack', 'ship', example, '--new', '--json']));
    assert.equal(shipped.created, true);
    const s = await waitFor(shipped.id, (x) => x.status !== 'PENDING', 'SUCCESS', 180_000);
    assert.equal(s.status, 'SUCCESS', JSON.stringify(s));
    const ip = s.replicas[0]?.formnetIp ?? '';
    assert.ok(!ips.includes(ip), 'its own formnet address');
    const vm = await vmAt(ip);
    assert.equal(vm.boot?.kind, 'snapshot', JSON.stringify(vm.boot));
    assert.equal(vm.boot?.fallback, null);
    assert.equal(vm.source.id, fpId);
    assert.match(await http(ip), /^Hello from /);
    const replicas = await attest(shipped.id);
    assert.equal(replicas.length, 1);
    const instance = replicas[0]?.checks.find((c) => c.name === 'cmdline.instance');
    assert.match(instance?.detail ?? '', /instance-neutral command line/);
    // The first instance (booted before the template existed) still answers and attests, with its
    // identity on its measured command line.
    assert.match(await http(ips[0] as string), /^Hello from /);
    const first = await attest(firstId);
    assert.equal(first.length, 1);
    assert.match(first[0]?.checks.find((c) => c.name === 'cmdline.instance')?.detail ?? '', /instance params .*vm_id/);
    const { vms } = await vmm.request<{ vms: Vm[] }>('GET', '/vms');
    assert.equal(vms.length, 2, 'two instances, two VMs: no template among them');
    assert.ok(vms.every((v) => !v.id.startsWith('tpl-')));
  });
});
