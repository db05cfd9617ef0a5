import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { FormError } from '@formation/interface';
import {
  classifyTemplateBoot,
  consoleTail,
  type InstanceIdentity,
  identityFiles,
  neutralCmdline,
  qemuFingerprint,
  type TemplateMeta,
  type TemplateWant,
  templateMismatch,
} from '../src/boot-snapshot.ts';
import type { QemuIdentity } from '../src/qemu-driver.ts';
import { TEST_QEMU } from './helpers.ts';

const ident: InstanceIdentity = {
  ip: '10.129.0.2/24',
  gateway: '10.129.0.1',
  dns: '10.129.0.1',
  name: 'web-1',
  id: 'vm-0123456789ab',
  mac: '52:54:00:12:34:56',
};
const seed = 'ab'.repeat(32);
const code = (c: string) => (e: unknown) => e instanceof FormError && e.code === c;

const qemu: QemuIdentity = TEST_QEMU;
const want: TemplateWant = {
  formpackId: 'f'.repeat(64),
  kernelSha256: '1'.repeat(64),
  initramfsSha256: '2'.repeat(64),
  diskSha256: '3'.repeat(64),
  kernel: '/fp/vmlinuz',
  initramfs: '/fp/initramfs.img',
  baseDisk: '/fp/disk.qcow2',
  baseDiskFormat: 'qcow2',
  diskGiB: 1,
  cmdline: neutralCmdline('console=ttyS0 root=/dev/vda rw'),
  memMiB: 256,
  vcpu: 1,
  dataDiskMiB: 1024,
  agentChannel: 'org.qemu.guest_agent.0',
  netMode: 'tap',
  netns: 'formvm',
};
const meta: TemplateMeta = { v: 1, want, qemu, files: {}, createdAt: '', bootMs: 0, saveMs: 0 };

describe('boot snapshots: pure parts', () => {
  test('the template cmdline is the Formpack one plus the wait word, never an instance value', () => {
    assert.equal(neutralCmdline('console=ttyS0 root=/dev/vda rw'), 'console=ttyS0 root=/dev/vda rw vm_wait=identity');
    assert.equal(neutralCmdline('quiet vm_ip=1.2.3.4/24 vm_name=x  panic=-1'), 'quiet panic=-1 vm_wait=identity');
  });

  test('identity files: seed first, release last, every vm_* word from the VM', () => {
    const files = identityFiles(ident, seed, 1_767_225_600);
    assert.deepEqual(
      files.map((f) => f.path),
      ['/run/form/seed', '/run/form/identity', '/run/form/release'],
    );
    assert.equal(files[0]?.data, `${seed}\n`);
    assert.deepEqual(files[1]?.data.trim().split('\n'), [
      'vm_ip=10.129.0.2/24',
      'vm_gw=10.129.0.1',
      'vm_dns=10.129.0.1',
      'vm_name=web-1',
      'vm_id=vm-0123456789ab',
      'vm_mac=52:54:00:12:34:56',
      'vm_time=1767225600',
    ]);
    assert.equal(
      identityFiles({ ...ident, gateway: 'none', dns: 'none' }, seed, 0)[1]?.data.includes('vm_gw=none'),
      true,
    );
  });

  test('identity values that would add words or globs in the guest init are refused', () => {
    // The guest splits the identity on whitespace and expands globs: each of these would inject.
    for (const [k, v] of [
      ['name', 'web vm_ip=198.51.100.7/24'],
      ['name', 'web\nvm_gw=198.51.100.1'],
      ['name', '*'],
      ['id', 'vm-1 vm_dns=203.0.113.53'],
      ['ip', '10.0.0.2/24 vm_name=x'],
      ['mac', '52:54:00:12:34:56 vm_ip=1.1.1.1/8'],
      ['gateway', '$(reboot)'],
      ['dns', ''],
    ] as const) {
      assert.throws(() => identityFiles({ ...ident, [k]: v }, seed, 0), code('VM_BAD_ARGUMENT'), `${k}=${v}`);
    }
    assert.throws(() => identityFiles(ident, 'ab'.repeat(8), 0), code('VM_BAD_ARGUMENT'), 'a short seed');
    assert.throws(() => identityFiles(ident, seed, 1.5), code('VM_BAD_ARGUMENT'));
  });

  test('a template boot is classified from its console', () => {
    assert.equal(classifyTemplateBoot('[ 1.0] x\nFORM-INIT-WAIT 3.2\n'), 'waiting');
    assert.equal(classifyTemplateBoot('FORM-INIT-READY 4.1\n'), 'no-wait-point');
    assert.equal(classifyTemplateBoot('[ 0.5] booting'), 'pending');
  });

  test('a template console is read from its end only: a guest printing without end costs no host memory', () => {
    const dir = mkdtempSync('/tmp/fvmm-bsu-');
    try {
      const f = `${dir}/serial.log`;
      writeFileSync(f, `${'x'.repeat(4 * 2 ** 20)}\nFORM-INIT-WAIT 3.1\n`);
      const t = consoleTail(f, 64 * 1024);
      assert.equal(t.length, 64 * 1024);
      assert.equal(classifyTemplateBoot(t), 'waiting');
      assert.equal(consoleTail(`${dir}/absent.log`), '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a template fits only what it was made from, and says why not', () => {
    assert.equal(templateMismatch(meta, want, qemu), undefined);
    const cases: Array<[string, TemplateWant, QemuIdentity, RegExp, boolean]> = [
      ['other QEMU binary', want, { ...qemu, binarySha256: 'c'.repeat(64) }, /another QEMU/, true],
      ['other QEMU version', want, { ...qemu, version: 'QEMU emulator version 8.2.0' }, /another QEMU/, true],
      ['other accelerator', want, { ...qemu, accel: 'kvm' }, /accel tcg, this node uses kvm/, true],
      ['other CPU model', want, { ...qemu, cpu: 'host:AMD EPYC' }, /cpu qemu64/, true],
      ['other device layout', want, { ...qemu, devicesSha256: 'd'.repeat(64) }, /devicesSha256/, true],
      ['changed Formpack disk', { ...want, diskSha256: '4'.repeat(64) }, qemu, /Formpack changed.*diskSha256/, true],
      ['changed kernel', { ...want, kernelSha256: '5'.repeat(64) }, qemu, /kernelSha256/, true],
      ['other memory size', { ...want, memMiB: 512 }, qemu, /memMiB 256, this VM wants 512/, false],
      ['other vCPU count', { ...want, vcpu: 2 }, qemu, /vcpu 1, this VM wants 2/, false],
      ['other data disk', { ...want, dataDiskMiB: 0 }, qemu, /dataDiskMiB/, false],
      ['user-mode network (slirp state is saved)', { ...want, netMode: 'user' }, qemu, /netMode tap/, false],
    ];
    for (const [what, w, q, re, rebuild] of cases) {
      const m = templateMismatch(meta, w, q);
      assert.ok(m, what);
      assert.match(m.reason, re, what);
      assert.equal(m.rebuild, rebuild, what);
    }
  });

  test('the guest inits wait before anything instance-specific (else a template would hold it)', () => {
    const files = {
      'guest form-init': new URL('../../guest/files/form-init', import.meta.url),
      'fixture init': new URL('./fixtures/build-fixture.sh', import.meta.url),
    };
    for (const [what, url] of Object.entries(files)) {
      const all = readFileSync(url, 'utf8');
      // The fixture script makes the test's own ssh key on the host first: its init starts at the heredoc.
      const text = all.slice(Math.max(0, all.indexOf('cat > "$R/sbin/form-init"')));
      // The wait: a shell loop (the fixture) or one perl that waits and then reseeds (the guest's form-init).
      const wait = text.search(/while \[ ! -e \/run\/form\/release \]|until -e "\/run\/form\/release"/);
      assert.ok(wait > 0, `${what} has the wait point`);
      assert.ok(text.indexOf('FORM-INIT-WAIT') < wait, `${what} says it waits`);
      assert.ok(text.indexOf('0x5207') > wait, `${what} reseeds after the release`);
      // Everything that makes an instance itself comes after the wait.
      for (const needle of [
        /ssh-keygen|dropbearkey -t/,
        /form-attest init/,
        /hostname "?\$NAME|> \/proc\/sys\/kernel\/hostname/,
        /ip addr add|"addr add \$IP/, // (form-init: a line of its `ip -batch`)
        /form-disk init|\/app\/entrypoint|\/etc\/form\/entrypoint/,
      ]) {
        const at = text.search(needle);
        assert.ok(at > wait, `${what}: ${needle} after the wait point`);
      }
    }
  });

  test('the QEMU fingerprint changes with any part of the identity and not with key order', () => {
    const base = qemuFingerprint(qemu);
    assert.match(base, /^[0-9a-f]{16}$/);
    const reordered = Object.fromEntries(Object.entries(qemu).reverse()) as unknown as QemuIdentity;
    assert.equal(qemuFingerprint(reordered), base);
    for (const k of Object.keys(qemu) as Array<keyof QemuIdentity>) {
      assert.notEqual(qemuFingerprint({ ...qemu, [k]: `${qemu[k]}x` }), base, k);
    }
  });
});
