import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  GUEST_CONTRACT,
  guestFiles,
  INITRAMFS_MODULES,
  initramfsInit,
  kernelParams,
  parseEntrypointState,
} from '../src/index.ts';

test('kernelParams builds vm_* parameters and refuses bad values', () => {
  assert.equal(
    kernelParams({ ip: '10.128.0.5/9', gw: '10.128.0.1', dns: 'none', name: 'web-1', id: 'abc_1' }),
    'vm_ip=10.128.0.5/9 vm_gw=10.128.0.1 vm_dns=none vm_name=web-1 vm_id=abc_1',
  );
  assert.equal(kernelParams({}), '');
  for (const bad of [
    { ip: '10.0.0.1' },
    { ip: '300.1.1.1/24' },
    { ip: '10.0.0.1/33' },
    { gw: 'x' },
    { dns: '1.2.3' },
    { name: 'a b' },
    { name: 'a.b' },
    { id: 'x y' },
  ]) {
    assert.throws(
      () => kernelParams(bad),
      (e: unknown) => e instanceof FormError && e.code === 'BAD_REQUEST',
      JSON.stringify(bad),
    );
  }
});

test('parseEntrypointState reads the three states and rejects junk', () => {
  assert.deepEqual(parseEntrypointState('running 123 0\n'), { state: 'running', pid: 123, restarts: 0 });
  assert.deepEqual(parseEntrypointState('exited 7 3'), { state: 'exited', code: 7, restarts: 3 });
  assert.deepEqual(parseEntrypointState('none 0 0'), { state: 'none', restarts: 0 });
  assert.equal(parseEntrypointState('bogus 1 2'), null);
  assert.equal(parseEntrypointState('running x 0'), null);
  assert.equal(parseEntrypointState(''), null);
});

test('guest files exist, are executable POSIX sh and keep the contract', () => {
  for (const f of guestFiles()) {
    assert.ok(statSync(f.source).mode & 0o100, `${f.source} executable`);
    assert.equal(spawnSync('sh', ['-n', f.source]).status, 0, `${f.source} parses`);
  }
  const init = readFileSync(guestFiles().find((f) => f.target === GUEST_CONTRACT.init)!.source, 'utf8');
  for (const needle of [
    GUEST_CONTRACT.readyMarker,
    GUEST_CONTRACT.agentChannel,
    GUEST_CONTRACT.entrypointLog,
    GUEST_CONTRACT.entrypointState,
    'vm_ip=',
    'vm_gw=',
    'vm_dns=',
    'vm_name=',
    'vm_id=',
    'ssh-keygen',
    '127.0.1.1',
  ]) {
    assert.ok(init.includes(needle), `form-init mentions ${needle}`);
  }
  const ir = initramfsInit();
  assert.ok(
    ir.includes(GUEST_CONTRACT.init) && ir.includes('switch_root') && ir.includes(GUEST_CONTRACT.initramfsErrorMarker),
  );
  assert.ok(INITRAMFS_MODULES.includes('virtio_blk') && INITRAMFS_MODULES.includes('virtio_console'));
});

test('the encrypted data disk is in the contract: form-disk installed, dm_crypt loaded, the disk key handed over', () => {
  const disk = guestFiles().find((f) => f.target === GUEST_CONTRACT.disk);
  assert.ok(disk, 'form-disk is installed');
  for (const m of ['dm_crypt', 'xts', 'algif_skcipher'] as const) assert.ok(INITRAMFS_MODULES.includes(m), m);
  const attest = readFileSync(guestFiles().find((f) => f.target === GUEST_CONTRACT.attest)!.source, 'utf8');
  assert.ok(attest.includes(GUEST_CONTRACT.diskKeySecret) && attest.includes('unlock'));
  const src = readFileSync(disk.source, 'utf8');
  for (const needle of [GUEST_CONTRACT.dataDiskSerial, 'luksFormat', 'aes-xts-plain64', '--test-passphrase']) {
    assert.ok(src.includes(needle), `form-disk mentions ${needle}`);
  }
  const init = readFileSync(guestFiles().find((f) => f.target === GUEST_CONTRACT.init)!.source, 'utf8');
  assert.ok(init.includes('form-disk init'), 'form-init locks /data at boot');
  // On this host there is no virtio disk with serial form-data: status says absent, unlock refuses.
  assert.equal(spawnSync('sh', [disk.source, 'status'], { encoding: 'utf8' }).stdout, 'state=absent\n');
  const u = spawnSync('sh', [disk.source, 'unlock', '/dev/null'], { encoding: 'utf8' });
  assert.equal(u.status, 3);
  assert.match(u.stderr, /this VM has none/);
});

test('form-init supervises: the entrypoint restarts with backoff and the state file follows', () => {
  // Run the supervisor function alone, with the paths pointed into a temp dir.
  const init = readFileSync(guestFiles().find((f) => f.target === GUEST_CONTRACT.init)!.source, 'utf8');
  const fn = /supervise\(\) \{[\s\S]*?\n\}\n/.exec(init)?.[0];
  assert.ok(fn, 'supervise() found');
  const script = `set -u
D=$(mktemp -d); STATE=$D/state; ELOG=$D/log; N=$D/n; echo 0 > $N
mkdir -p $D/etc/form
cat > $D/ep <<'EOF2'
#!/bin/sh
n=$(cat "$1"); echo $((n + 1)) > "$1"; echo "run $n"; exit 3
EOF2
chmod +x $D/ep
${fn.replaceAll('/etc/form/entrypoint', '$D/ep $N').replaceAll('/proc/uptime', '$D/uptime')}
echo 100.0 > $D/uptime
supervise & S=$!
sleep 3.6; kill -TERM $S; wait $S 2>/dev/null
cat $ELOG; echo "STATE $(cat $STATE)"; rm -rf $D`;
  const r = spawnSync('sh', ['-c', script], { encoding: 'utf8', timeout: 20_000 });
  // delays 1 s, 2 s: within 3.6 s it ran 3 times (t=0, 1, 3)
  assert.match(
    r.stdout,
    /run 0\n\[form-init\] entrypoint exited with code 3; restarting in 1s\nrun 1\n\[form-init\] entrypoint exited with code 3; restarting in 2s\nrun 2\n/,
  );
  assert.match(r.stdout, /STATE exited 3 2/);
});
