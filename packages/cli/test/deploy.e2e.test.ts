// The whole single-node deploy path through the real `form` CLI: a node in its own network namespace,
// a Formpack built and shipped, SUCCESS, HTTP and ssh over formnet, commit + stop/start, ownership,
// and the faults of issue 6. Real QEMU VMs (TCG here), real WireGuard, real SQLite.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { integrationPrerequisites } from '@formation/interface';
import { fdevNamespaces, formCli, formationdPid as nodePid, qemuPidsOf } from './node-e2e.ts';
import { runForm } from './run-form.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const example = join(root, 'examples/hello-server');
const why = integrationPrerequisites('deploy e2e test', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'socat', 'sshpass', 'mmdebstrap'],
});

const NS = `fe2e${randomBytes(3).toString('hex')}`;
// FORM_E2E_PORT_OFFSET: run next to another copy of this test (its node would hold these ports)
const OFFSET = process.env.FORM_E2E_PORT_OFFSET ?? '50';
// Made only when the tests run: a skipped describe runs no after-hook to remove them.
const home = why ? '' : mkdtempSync(join(tmpdir(), 'form-e2e-'));
const otherHome = why ? '' : mkdtempSync(join(tmpdir(), 'form-e2e-other-'));
// The daemon logs at info into <home>/node/formationd.log: what to read when this test fails.
const env = { FORM_HOME: home, FORM_PORT_OFFSET: OFFSET, FORM_LOG_LEVEL: 'info' };
// (the CLI itself never prints library logs on stdout, whatever FORM_LOG_LEVEL says)
const { form, json, waitFor } = formCli(env);
const formationdPid = () => nodePid(home);

describe('single-node deploy path over the real CLI', { skip: why || false, concurrency: false }, () => {
  let id = '';
  let ip = '';

  before(async () => {
    json(await form(['kit', 'init', '--yes', '--json']));
    json(await runForm(['kit', 'init', '--yes', '--json'], { FORM_HOME: otherHome, FORM_PORT_OFFSET: OFFSET }));
  });

  after(async () => {
    await form(['node', 'down']);
    // Nothing of ours may survive: no QEMU of this data dir (a standby VM included), no namespace.
    assert.deepEqual(qemuPidsOf(home, { all: true }), []);
    const nsList = execFileSync('ip', ['netns', 'list']).toString();
    assert.ok(!nsList.includes(NS), `namespace ${NS} left behind`);
    // Formpacks and VM disks are hundreds of MiB: keep them only when asked (FORM_KEEP_TEST_DATA=1).
    if (!process.env.FORM_KEEP_TEST_DATA)
      for (const d of [home, otherHome]) rmSync(d, { recursive: true, force: true });
  });

  test('shipping with no node running says how to start one', async () => {
    const r = await form(['pack', 'ship', example]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /form node up/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  test('form node up --netns starts a healthy node and status reports it', async () => {
    const up = json<{ netns: string; ports: { state: number } }>(await form(['node', 'up', '--netns', NS, '--json']));
    assert.equal(up.netns, NS);
    assert.equal(up.ports.state, 3004 + Number(OFFSET));
    const st = await form(['node', 'status']);
    assert.equal(st.code, 0);
    assert.match(st.stdout, /formationd is running/);
    // the leak guard: formnet addresses nobody holds are unreachable inside the node namespace
    assert.match(execFileSync('ip', ['-n', NS, 'route', 'show', 'type', 'unreachable']).toString(), /10\.128\.0\.0\/9/);
  });

  test('ship builds and deploys; shipping again is idempotent; SUCCESS with a formnet IP and DNS name', async () => {
    const shipped = json<{ id: string; created: boolean }>(await form(['pack', 'ship', example, '--json']));
    assert.equal(shipped.created, true);
    id = shipped.id;
    const again = json<{ id: string; created: boolean }>(await form(['pack', 'ship', example, '--json']));
    assert.equal(again.id, id);
    assert.equal(again.created, false);
    const s = await waitFor(id, (x) => x.status !== 'PENDING', 'SUCCESS');
    assert.equal(s.status, 'SUCCESS', JSON.stringify(s));
    assert.equal(s.dnsName, 'hello-server.dev.formation.local');
    ip = s.replicas[0]?.formnetIp ?? '';
    assert.match(ip, /^10\.129\.\d+\.\d+$/);
    const human = await form(['manage', 'get', 'status', 'hello-server']);
    assert.match(human.stdout, /^SUCCESS$/m);
    const list = json<Array<{ id: string }>>(await form(['manage', 'list', '--json']));
    assert.deepEqual(
      list.map((i) => i.id),
      [id],
    );
  });

  test('status --attest shows the replica attested and its data disk locked; form disk unlock opens it over attestation', async () => {
    type Att = { replicas: Array<{ attested: string; disk: string }> };
    const before = json<Att>(await form(['manage', 'get', 'status', 'hello-server', '--attest', '--json']));
    assert.deepEqual(
      before.replicas.map((r) => [r.attested, r.disk]),
      [['ok', 'locked']],
    );
    const human = await form(['manage', 'get', 'status', 'hello-server', '--attest']);
    assert.match(human.stdout, /attested: ok {2}disk: locked/);
    const u = json<{ ok: boolean; key: { path: string; created: boolean }; replicas: Array<{ detail: string }> }>(
      await form(['disk', 'unlock', 'hello-server', '--json']),
    );
    assert.equal(u.ok, true);
    assert.equal(u.key.created, true);
    assert.equal(u.key.path, join(home, 'keys', 'disks', `${id}.key`));
    assert.match(u.replicas[0]?.detail ?? '', /mounted at \/data \(formatted now\)/);
    const st = json<{ replicas: Array<{ state: string }> }>(await form(['disk', 'status', 'hello-server', '--json']));
    assert.deepEqual(
      st.replicas.map((r) => r.state),
      ['unlocked'],
    );
    // another key is refused before anything is made or sent
    const other = await runForm(['disk', 'unlock', id], { FORM_HOME: otherHome, FORM_PORT_OFFSET: OFFSET });
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /Cannot unlock the disk of instance hello-server: it belongs to/);
    assert.equal(existsSync(join(otherHome, 'keys', 'disks', `${id}.key`)), false);
  });

  test('the app answers over formnet through form proxy, and ssh logs in with the Formfile password', async () => {
    // Temporary peers this test makes (form proxy, form ssh): namespaces fdev<tag>, records in this FORM_HOME.
    const fdevBefore = new Set(fdevNamespaces());
    const port = 20000 + Math.floor(Math.random() * 20000);
    const proxy = spawn(
      process.execPath,
      [join(root, 'packages/cli/bin/form.js'), 'proxy', 'hello-server', `${port}:8080`, '--for', '20'],
      {
        env: { ...process.env, ...env },
        stdio: 'ignore',
      },
    );
    try {
      let body = '';
      for (let i = 0; i < 50 && !body; i++) {
        body = await fetch(`http://127.0.0.1:${port}/`)
          .then((r) => r.text())
          .catch(() => '');
        if (!body) await new Promise((r) => setTimeout(r, 300));
      }
      assert.match(body, /^Hello from hello-server-/);
    } finally {
      proxy.kill('SIGTERM');
    }
    const ssh = await form(
      ['ssh', 'bigdog@hello-server.dev.formation.local', '--', 'whoami; sudo -n true && echo sudo-ok'],
      {
        SSHPASS: 'bigdog123',
      },
    );
    assert.equal(ssh.code, 0, ssh.stderr);
    assert.match(ssh.stdout, /^bigdog\nsudo-ok$/m);
    const wrong = await form(['ssh', 'bigdog@hello-server', '--', 'true'], { SSHPASS: 'not-the-password' });
    assert.notEqual(wrong.code, 0, 'a wrong password must not log in');
    const unknown = await form(['ssh', 'bigdog@nope.dev.formation.local', '--', 'true']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Cannot resolve nope\.dev\.formation\.local: no instance has that name/);
    // every temporary formnet peer this test made was removed again (others' namespaces are not ours to judge)
    assert.deepEqual(
      fdevNamespaces().filter((ns) => !fdevBefore.has(ns)),
      [],
      'temporary peer namespaces left',
    );
    const sessions = join(home, 'formnet', 'sessions');
    assert.deepEqual(existsSync(sessions) ? readdirSync(sessions) : [], [], 'temporary peer records left');
  });

  test('a file written over ssh and committed survives form manage stop + start; status shows the revision', async () => {
    const w = await form(['ssh', `bigdog@${ip}`, '--', 'echo e2e-commit > /home/bigdog/kept; sync'], {
      SSHPASS: 'bigdog123',
    });
    assert.equal(w.code, 0, w.stderr);
    const c = json<{ revision: number; sha256: string }>(await form(['commit', ip, '--json']));
    assert.equal(c.revision, 1);
    await waitFor(id, (s) => s.revision === 1 && s.replicas[0]?.revision === 1, 'revision 1 on the replica', 30_000);
    assert.equal((await form(['manage', 'stop', 'hello-server'])).code, 0);
    await waitFor(id, (s) => s.replicas[0]?.state === 'stopped', 'stopped');
    assert.deepEqual(qemuPidsOf(home), [], 'the VM is stopped');
    assert.equal((await form(['manage', 'start', 'hello-server'])).code, 0);
    await waitFor(id, (s) => s.status === 'SUCCESS', 'running again');
    const r = await form(['ssh', `bigdog@${ip}`, '--', 'cat /home/bigdog/kept'], { SSHPASS: 'bigdog123' });
    assert.equal(r.stdout.trim(), 'e2e-commit');
    // the encrypted data disk (unlocked earlier) is locked again after the restart, and opens again
    const locked = json<{ replicas: Array<{ state: string }> }>(
      await form(['disk', 'status', 'hello-server', '--json']),
    );
    assert.deepEqual(
      locked.replicas.map((x) => x.state),
      ['locked'],
    );
    // `--watch` (this machine as the key service) finds the locked replica, attests it and unlocks it
    // with the same key: the data written before the restart is there.
    const watcher = spawn(
      process.execPath,
      [join(root, 'packages/cli/bin/form.js'), 'disk', 'unlock', 'hello-server', '--watch', '1', '--json'],
      {
        env: { ...process.env, ...env, NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let watchOut = '';
    watcher.stdout.on('data', (d) => {
      watchOut += d;
    });
    const exited = new Promise<number | null>((resolve) => watcher.on('close', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/"unlocked":true/.test(watchOut) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
      const line = watchOut.split('\n').find((l) => l.includes('"unlocked":true'));
      assert.ok(line, `--watch unlocked nothing within 60 s: ${watchOut}`);
      const event = JSON.parse(line) as { instance: string; unlocked: boolean; detail: string };
      assert.equal(event.instance, id);
      assert.match(event.detail, /\(existing data\)/);
      const st = json<{ replicas: Array<{ state: string }> }>(await form(['disk', 'status', 'hello-server', '--json']));
      assert.deepEqual(
        st.replicas.map((x) => x.state),
        ['unlocked'],
      );
    } finally {
      watcher.kill('SIGINT');
    }
    assert.equal(await exited, 0, 'the watcher ends cleanly on Ctrl-C');
    assert.equal(existsSync(join(home, 'keys', 'disks', `${id}.key`)), true);
  });

  test('another key can neither commit, stop nor delete the instance', async () => {
    const o = { FORM_HOME: otherHome, FORM_PORT_OFFSET: OFFSET };
    for (const args of [
      ['commit', ip],
      ['manage', 'stop', id],
      ['manage', 'delete', id],
    ]) {
      const r = await runForm(args, o);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, /belongs to 0x[0-9a-f]{40}, you are 0x[0-9a-f]{40}/);
    }
    assert.equal((await waitFor(id, () => true, 'status')).status, 'SUCCESS');
  });

  test('a Formfile asking for more than the node has is FAILURE with the numbers', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'form-e2e-big-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'Formfile'), 'NAME too-big\nVCPU 120\nMEM 200000\nNOCOPY\n');
    const shipped = json<{ id: string }>(await form(['pack', 'ship', dir, '--json']));
    const s = await waitFor(shipped.id, (x) => x.status !== 'PENDING', 'FAILURE', 60_000);
    assert.equal(s.status, 'FAILURE');
    assert.match(s.reason ?? '', /120 vCPU requested, at most \d+ free/);
    assert.equal((await form(['manage', 'delete', shipped.id])).code, 0);
  });

  test('an entrypoint that crashes at boot is FAILURE with the last lines of its log', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'form-e2e-crash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'Formfile'),
      'NAME crasher\nNOCOPY\nENTRYPOINT ["/bin/sh", "-c", "echo boom-from-entrypoint; exit 3"]\n',
    );
    const shipped = json<{ id: string }>(await form(['pack', 'ship', dir, '--json']));
    const s = await waitFor(shipped.id, (x) => x.status !== 'PENDING', 'FAILURE', 180_000);
    assert.equal(s.status, 'FAILURE', JSON.stringify(s));
    assert.match(s.reason ?? '', /entrypoint keeps exiting \(code 3/);
    assert.match(s.reason ?? '', /boom-from-entrypoint/);
    assert.equal((await form(['manage', 'delete', shipped.id])).code, 0);
  });

  test('the daemon killed mid-deploy and restarted finishes the deployment without a duplicate VM', async () => {
    const shipped = json<{ id: string }>(await form(['pack', 'ship', example, '--new', '--json']));
    await waitFor(shipped.id, (s) => s.replicas.some((r) => r.state === 'starting'), 'starting', 60_000);
    const pid = formationdPid();
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    json(await form(['node', 'up', '--netns', NS, '--json']));
    const s = await waitFor(shipped.id, (x) => x.status !== 'PENDING', 'SUCCESS after restart');
    assert.equal(s.status, 'SUCCESS', JSON.stringify(s));
    // VM lists are signed reads (the owner sees its own VMs; an unsigned GET is 401).
    const { developerKeyPath, loadKey } = await import('@formation/identity');
    const { ApiClient } = await import('@formation/service/client');
    const dev = await loadKey(developerKeyPath(home));
    assert.equal((await fetch(`http://127.0.0.1:${3002 + Number(OFFSET)}/vms`)).status, 401);
    const vms = await new ApiClient(`http://127.0.0.1:${3002 + Number(OFFSET)}`, dev).get<{
      vms: Array<{ name: string }>;
    }>('/vms');
    const forIt = vms.vms.filter((v) => v.name.endsWith(`-${shipped.id.slice(0, 6)}`));
    assert.equal(forIt.length, 1, `exactly one VM for the instance: ${JSON.stringify(vms.vms.map((v) => v.name))}`);
    // The deleted instances' VMs are gone by now or soon: then only the first instance and this one remain.
    const t0 = Date.now();
    while (qemuPidsOf(home).length > 2 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 500));
    assert.equal(qemuPidsOf(home).length, 2, 'the first instance and this one, nothing more');
  });

  test('delete removes the VM; node down stops everything and removes the namespace', async () => {
    // two instances are named hello-server now (one shipped with --new): a name is ambiguous, an id is not
    const ambiguous = await form(['manage', 'delete', 'hello-server']);
    assert.equal(ambiguous.code, 2);
    assert.match(ambiguous.stderr, /Cannot tell which instance "hello-server" means: 2 match/);
    assert.equal((await form(['manage', 'delete', id])).code, 0);
    const t0 = Date.now();
    while (qemuPidsOf(home).length > 1 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 500));
    assert.equal(qemuPidsOf(home).length, 1);
    const down = await form(['node', 'down']);
    assert.equal(down.code, 0, `${down.stdout}\n${down.stderr}`);
    assert.deepEqual(qemuPidsOf(home, { all: true }), []);
    assert.ok(!existsSync(join(home, 'node', 'formationd.pid')));
    // the node's runtime Redis is gone too, also the one the killed daemon left (the process this node
    // recorded; not whatever listens on the port, which another run may hold)
    const redisPid = Number(readFileSync(join(home, 'runtime', 'redis', 'formationd-redis.pid'), 'utf8'));
    assert.ok(redisPid > 0, 'the node recorded its Redis');
    let redisCmd = '';
    try {
      redisCmd = readFileSync(`/proc/${redisPid}/cmdline`, 'utf8');
    } catch {}
    assert.doesNotMatch(redisCmd, /^redis-server/, 'runtime Redis left running');
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list']).toString(), new RegExp(NS));
  });
});
