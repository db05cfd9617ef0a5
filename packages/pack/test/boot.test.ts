import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseEntrypointState } from '@formation/guest';
import { sshArgv, until } from '@formation/interface/testing';
import { Builder, loadSpec } from '../src/index.ts';
import { buildPrereqMissing, CACHE_DIR } from './env.ts';
import { banner, bootFormpack, guestExec, qga } from './qemu.ts';

const example = new URL('../../../examples/hello-server', import.meta.url).pathname;
const skip = buildPrereqMissing(['qemu-system-x86_64', 'sshpass', 'ssh']);
const work = mkdtempSync(join(tmpdir(), 'form-pack-boot-'));
after(() => rmSync(work, { recursive: true, force: true }));

async function http(port: number): Promise<{ status: number; body: string } | undefined> {
  const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
  return { status: r.status, body: await r.text() };
}

/** A password login as the example's user (no key offered: proves password login works). */
function ssh(port: number, cmd: string): { code: number; out: string } {
  const argv = sshArgv('127.0.0.1', cmd, { port, connectTimeoutS: 20, passwordOnly: true });
  const r = spawnSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

test(
  'examples/hello-server Formpack boots in QEMU: init ready, HTTP 200 on 8080, SSH, agent, restart, power-off',
  { skip, timeout: 600_000 },
  async () => {
    const { spec, dir } = await loadSpec(example);
    // The example as written, plus a key-only user (no password, no sudo) to check public-key login.
    const keyFile = join(work, 'id_ed25519');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', keyFile]);
    const pub = readFileSync(`${keyFile}.pub`, 'utf8').trim();
    spec.users.push({
      ...spec.users[0]!,
      username: 'keyonly',
      passwd: null,
      sudo: false,
      sshPwauth: false,
      sshAuthorizedKeys: [pub],
    });
    const builder = new Builder({ dataDir: join(work, 'data'), cacheDir: CACHE_DIR });
    const { id } = await builder.build({ spec, dir, owner: 'boot-test' });
    const vm = await bootFormpack(builder.pathOf(id), work, [22, 8080], 'vm_name=hello-test vm_id=inst-1');
    try {
      const ready = await until(
        'FORM-INIT-READY on the serial console',
        async () => {
          const s = existsSync(vm.serial) ? readFileSync(vm.serial, 'utf8') : '';
          assert.doesNotMatch(s, /FORM-INITRAMFS-ERROR|Kernel panic/);
          return /FORM-INIT-READY [\d.]+/.exec(s)?.[0];
        },
        120_000,
        250,
      );
      assert.ok(ready);
      const res = await until('HTTP 200 from the entrypoint', () => http(vm.ports[8080]!), 60_000, 250);
      assert.equal(res.status, 200);
      assert.equal(res.body, 'Hello from hello-test!\n');
      const b = await until('SSH banner', () => banner(vm.ports[22]!), 30_000, 250);
      assert.match(b, /^SSH-2\.0-OpenSSH/);

      // Password login (USER ssh_pwauth:true), sudo:true, hostname from vm_name, instance id, per-instance host key.
      const s = ssh(
        vm.ports[22]!,
        'hostname; cat /run/form/instance-id; sudo -n id -u; ls /etc/ssh/ssh_host_ed25519_key',
      );
      assert.equal(s.code, 0, s.out);
      assert.deepEqual(s.out.trim().split('\n'), ['hello-test', 'inst-1', '0', '/etc/ssh/ssh_host_ed25519_key']);

      const keyArgv = sshArgv('127.0.0.1', 'id -un; sudo -n true 2>/dev/null && echo SUDO || echo NOSUDO', {
        user: 'keyonly',
        port: vm.ports[22],
        connectTimeoutS: 20,
        keyFile,
      });
      const k = spawnSync(keyArgv[0] as string, keyArgv.slice(1), { encoding: 'utf8', timeout: 60_000 });
      assert.equal(k.status, 0, k.stderr);
      assert.deepEqual(k.stdout.trim().split('\n'), ['keyonly', 'NOSUDO']);

      // The agent: ping, the entrypoint log, and a supervised restart after the entrypoint dies.
      assert.deepEqual(await qga(vm.qga, 'guest-ping'), {});
      const st1 = parseEntrypointState((await guestExec(vm.qga, '/bin/cat', ['/run/form/entrypoint.state'])).out);
      assert.equal(st1?.state, 'running');
      const h = (await qga(vm.qga, 'guest-file-open', { path: '/var/log/form/entrypoint.log', mode: 'r' })) as number;
      const chunk = (await qga(vm.qga, 'guest-file-read', { handle: h, count: 65536 })) as { 'buf-b64': string };
      await qga(vm.qga, 'guest-file-close', { handle: h });
      assert.match(Buffer.from(chunk['buf-b64'], 'base64').toString(), /hello-server listening on :8080/);
      assert.equal((await guestExec(vm.qga, '/bin/kill', [String(st1?.state === 'running' ? st1.pid : 0)])).code, 0);
      const st2 = await until(
        'entrypoint restarted',
        async () => {
          const st = parseEntrypointState((await guestExec(vm.qga, '/bin/cat', ['/run/form/entrypoint.state'])).out);
          return st?.state === 'running' && st.restarts === 1 ? st : undefined;
        },
        30_000,
        250,
      );
      assert.notEqual(st2.state === 'running' && st2.pid, st1?.state === 'running' && st1.pid);
      assert.equal((await until('HTTP after restart', () => http(vm.ports[8080]!), 30_000, 250)).status, 200);

      // Clean power-off through the agent: QEMU exits by itself.
      await qga(vm.qga, 'guest-exec', { path: '/sbin/form-poweroff', arg: [] });
      const code = await Promise.race([vm.exited, new Promise((r) => setTimeout(() => r('timeout'), 30_000).unref())]);
      assert.notEqual(code, 'timeout', 'QEMU did not exit after form-poweroff');
    } finally {
      vm.kill();
    }
  },
);
