import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import type { DriverVmSpec } from '../src/driver.ts';
import { checkImage } from '../src/image-check.ts';
import { macFor, VmNetwork } from '../src/network.ts';
import { QemuDriver, qemuArgv } from '../src/qemu-driver.ts';

/**
 * Peer and tenant input that reaches QEMU (running as root): qcow2 images that name host files, and
 * strings spliced into QEMU's argv. Real qemu-img, real QEMU binary (no boot needed: every case must be
 * refused before QEMU starts).
 */
const logger = createLogger('silent');
const tmp = mkdtempSync('/tmp/fvmm-hostile-');
after(() => rmSync(tmp, { recursive: true, force: true }));
const img = (...args: string[]): void => void execFileSync('qemu-img', args, { stdio: 'ignore' });
const HOSTILE_EXPOSE = '8080-:22,guestfwd=tcp:10.0.2.9:1-cmd:touch /tmp/x';

function code(c: string, re?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(isFormError(e), `a FormError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

/** A host file a hostile image wants the guest to see. */
const hostSecret = join(tmp, 'host-secret');
writeFileSync(hostSecret, 'root:$6$secret\n'.padEnd(2 ** 20, '\n'));

describe('qcow2 images that reach host files are refused', () => {
  const backed = join(tmp, 'backed.qcow2');
  img('create', '-q', '-f', 'qcow2', '-b', hostSecret, '-F', 'raw', backed, '4M');
  const dataFile = join(tmp, 'datafile.qcow2');
  img('create', '-q', '-f', 'qcow2', '-o', `data_file=${hostSecret}`, dataFile, '1M');
  const clean = join(tmp, 'clean.qcow2');
  img('create', '-q', '-f', 'qcow2', clean, '4M');
  const vmdk = join(tmp, 'flat.vmdk');
  writeFileSync(
    vmdk,
    `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 2048 FLAT "${hostSecret}" 0\n`,
  );

  test('checkImage: backing file, data-file, foreign VMDK extent, wrong format', async () => {
    await assert.rejects(checkImage(backed, { format: 'qcow2' }), code('VM_IMAGE_UNSAFE', /backing file/));
    await assert.rejects(checkImage(dataFile, { format: 'qcow2' }), code('VM_IMAGE_UNSAFE', /data-file/));
    await assert.rejects(checkImage(vmdk, { format: 'vmdk' }), code('VM_IMAGE_UNSAFE', /extent/));
    await assert.rejects(checkImage(hostSecret, { format: 'qcow2' }), code('VM_IMAGE_INVALID'));
    assert.equal((await checkImage(clean, { format: 'qcow2' })).virtualSize, 4 * 2 ** 20);
  });

  test('checkImage: an overlay may be backed by exactly the base the VMM verified, nothing else', async () => {
    const overlay = join(tmp, 'overlay.qcow2');
    img('create', '-q', '-f', 'qcow2', '-b', clean, '-F', 'qcow2', overlay);
    const r = await checkImage(overlay, { format: 'qcow2', backing: { file: clean, format: 'qcow2' } });
    assert.equal(r.backing, clean);
    await assert.rejects(
      checkImage(backed, { format: 'qcow2', backing: { file: clean, format: 'qcow2' } }),
      code('VM_IMAGE_UNSAFE', /not the VM's base/),
    );
    // A revision from a peer names the peer's base; the node replaces it unopened (rebase -u).
    assert.equal((await checkImage(backed, { format: 'qcow2', backing: 'replaced' })).backing, hostSecret);
    await assert.rejects(checkImage(dataFile, { format: 'qcow2', backing: 'replaced' }), code('VM_IMAGE_UNSAFE'));
  });

  test('QemuDriver.create refuses a base disk with a backing file or a data-file', async () => {
    const driver = new QemuDriver({ logger, accel: 'tcg' });
    for (const [i, base] of [backed, dataFile].entries()) {
      const s = spec(`base${i}`, { baseDisk: base });
      await assert.rejects(driver.create(s), code('VM_IMAGE_UNSAFE'));
      assert.equal(existsSync(join(s.dir, 'disk.qcow2')), false, 'no overlay made over it');
    }
  });

  test('QemuDriver.start refuses an overlay swapped for a hostile one (a revision from a peer)', async () => {
    const driver = new QemuDriver({ logger, accel: 'tcg' });
    const vm = await driver.create(spec('swap', { baseDisk: clean }));
    img('create', '-q', '-f', 'qcow2', '-b', hostSecret, '-F', 'raw', '-u', vm.paths.disk, '4M');
    await assert.rejects(driver.start(vm), code('VM_IMAGE_UNSAFE', /backing file/));
    assert.equal(existsSync(join(vm.spec.dir, 'qemu.log')), false, 'QEMU was never started');
    await driver.close();
  });
});

describe('strings spliced into QEMU argv', () => {
  test('a hostile expose string never reaches hostfwd=: VmNetwork.assign refuses it', async () => {
    const net = new VmNetwork({ mode: 'user', bridge: 'x', cidr: '10.0.2.0/24' }, logger);
    for (const bad of [HOSTILE_EXPOSE, '22', 0, 65536, 22.5, -1] as unknown[]) {
      await assert.rejects(
        net.assign('vm-x', { ips: new Set(), macs: new Set(), taps: new Set() }, [bad as number]),
        code('VM_BAD_ARGUMENT', /port/),
        `port ${JSON.stringify(bad)}`,
      );
    }
    const ok = await net.assign('vm-x', { ips: new Set(), macs: new Set(), taps: new Set() }, [22, 80, 22]);
    assert.deepEqual(
      ok.forwards.map((f) => f.guest),
      [22, 80],
    );
  });

  test('QemuDriver refuses a hostile forward, MAC, TAP, agent channel or path before QEMU runs', async () => {
    const driver = new QemuDriver({ logger, accel: 'tcg' });
    const base = join(tmp, 'argv-base.qcow2');
    img('create', '-q', '-f', 'qcow2', base, '4M');
    const user = (s: DriverVmSpec, forwards: unknown[]): DriverVmSpec['network'] =>
      ({ mode: 'user', mac: s.network.mac, forwards }) as DriverVmSpec['network'];
    const cases: Array<[string, (s: DriverVmSpec) => void]> = [
      ['forward', (s) => Object.assign(s, { network: user(s, [{ guest: HOSTILE_EXPOSE, host: 2222 }]) })],
      ['host port', (s) => Object.assign(s, { network: user(s, [{ guest: 22, host: 70000 }]) })],
      [
        'mac',
        (s) => Object.assign(s, { network: { mode: 'user', forwards: [], mac: '52:54:00:00:00:01,guestfwd=x' } }),
      ],
      ['tap', (s) => Object.assign(s, { network: { mode: 'tap', tap: 'ftap0,script=/tmp/x', mac: s.network.mac } })],
      ['agent channel', (s) => Object.assign(s, { agentChannel: 'org.qemu.guest_agent.0,chardev=x' })],
      ['kernel path', (s) => Object.assign(s, { kernel: '/tmp/k,id=x' })],
    ];
    for (const [what, mutate] of cases) {
      const vm = await driver.create(spec(`argv-${what.replace(' ', '-')}`, { baseDisk: base }));
      mutate(vm.spec);
      await assert.rejects(driver.start(vm), code('VM_BAD_ARGUMENT'), what);
      assert.equal(existsSync(join(vm.spec.dir, 'qemu.log')), false, `${what}: QEMU was never started`);
      assert.throws(() => qemuArgv(vm, { incoming: false }), code('VM_BAD_ARGUMENT'), what);
    }
    await driver.close();
  });

  test('argv: ports as integers only, the seccomp sandbox with spawn=deny', async () => {
    const driver = new QemuDriver({ logger, accel: 'tcg' });
    const base = join(tmp, 'argv-ok.qcow2');
    img('create', '-q', '-f', 'qcow2', base, '4M');
    const vm = await driver.create(
      spec('argv-ok', {
        baseDisk: base,
        network: { mode: 'user', mac: macFor('argv-ok'), forwards: [{ guest: 80, host: 8080 }] },
      }),
    );
    const argv = qemuArgv(vm, { incoming: false });
    assert.ok(argv.includes('user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80'), argv.join(' '));
    assert.ok(!argv.some((a) => a.includes('guestfwd') || a.includes('cmd:')));
    const sb = argv[argv.indexOf('-sandbox') + 1] ?? '';
    assert.deepEqual(sb.split(',').sort(), [
      'elevateprivileges=deny',
      'obsolete=deny',
      'on',
      'resourcecontrol=deny',
      'spawn=deny',
    ]);
    // With -runas QEMU drops to its own uid after setting up; QEMU sets its filter first, so set*id is allowed.
    const dropped = qemuArgv(vm, { incoming: false, runAs: { uid: 2_000_000_123, gid: 2_000_000_123 } });
    assert.equal(dropped[dropped.indexOf('-runas') + 1], '2000000123:2000000123');
    assert.match(
      dropped[dropped.indexOf('-sandbox') + 1] ?? '',
      /^on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny$/,
    );
    assert.throws(() => qemuArgv(vm, { incoming: false, runAs: { uid: 0, gid: 0 } }), code('VM_BAD_ARGUMENT'));
    await driver.close();
  });
});

function spec(id: string, over: Partial<DriverVmSpec>): DriverVmSpec {
  const dir = join(tmp, id);
  mkdirSync(dir, { recursive: true });
  return {
    id,
    name: id,
    vcpu: 1,
    memMiB: 128,
    dir,
    kernel: hostSecret,
    cmdline: 'console=ttyS0',
    baseDisk: join(tmp, 'clean.qcow2'),
    baseDiskFormat: 'qcow2',
    diskGiB: 1,
    network: { mode: 'user', forwards: [], mac: macFor(id) },
    agentChannel: 'org.qemu.guest_agent.0',
    ...over,
  };
}
