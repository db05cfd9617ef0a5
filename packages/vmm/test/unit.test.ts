import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormError, isFormError } from '@formation/interface';
import { checkCapacity, hostCapacity, sumResources } from '../src/capacity.ts';
import { loadVmmConfig } from '../src/config.ts';
import { findImage, listImages, readFormpackDir, resolveFormpack } from '../src/images.ts';
import { intToIp, macFor, parseCidr, tapFor } from '../src/network.ts';
import { bridgeTableName, isIpv4 } from '../src/nft-table.ts';
import { QmpClient } from '../src/qmp.ts';
import { assertAction, canDo, KeyedSerializer, TRANSITIONS, VM_ACTIONS, VM_STATES } from '../src/state-machine.ts';
import { VmStore } from '../src/store.ts';
import { wakeRuleset } from '../src/wake-gate.ts';
import { coded } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'fvmm-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('state machine', () => {
  test('every state has an entry; transitional states allow nothing', () => {
    for (const s of VM_STATES) assert.ok(Array.isArray(TRANSITIONS[s]));
    for (const s of ['starting', 'stopping', 'snapshotting', 'restoring', 'destroyed'] as const) {
      for (const a of VM_ACTIONS) assert.equal(canDo(s, a), false, `${s} allows ${a}`);
    }
    assert.equal(canDo('running', 'pause'), true);
    assert.equal(canDo('paused', 'resume'), true);
    assert.equal(canDo('stopped', 'start'), true);
    assert.equal(canDo('crashed', 'start'), true);
  });

  test('an illegal action is VM_BAD_STATE (409) naming the state', () => {
    assert.throws(
      () => assertAction('vm-1', 'stopped', 'pause'),
      (e: unknown) =>
        e instanceof FormError &&
        e.code === 'VM_BAD_STATE' &&
        e.status === 409 &&
        e.message === 'Cannot pause VM vm-1: it is stopped' &&
        /start/.test(e.hint ?? ''),
    );
    assert.throws(() => assertAction('vm-1', 'running', 'start'), /it is running/);
    assert.throws(() => assertAction('vm-1', 'paused', 'pause'), /it is paused/);
    assertAction('vm-1', 'running', 'stop');
  });

  test('KeyedSerializer runs tasks of one key one at a time, in order, other keys in parallel', async () => {
    const s = new KeyedSerializer();
    const log: string[] = [];
    const task = (k: string, n: number, ms: number) => () =>
      new Promise<number>((r) => {
        log.push(`start ${k}${n}`);
        setTimeout(() => {
          log.push(`end ${k}${n}`);
          r(n);
        }, ms);
      });
    const failing = s.run('a', async () => {
      log.push('start a0');
      throw new Error('boom');
    });
    const p = [s.run('a', task('a', 1, 30)), s.run('a', task('a', 2, 5)), s.run('b', task('b', 1, 5))];
    await assert.rejects(failing, /boom/);
    assert.deepEqual(await Promise.all(p), [1, 2, 1]);
    const a = log.filter((l) => l.endsWith('a1') || l.endsWith('a2'));
    assert.deepEqual(a, ['start a1', 'end a1', 'start a2', 'end a2'], 'a2 starts only after a1 ended');
    assert.ok(log.indexOf('start b1') < log.indexOf('end a1'), 'key b is not blocked by key a');
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(s.busyKeys, 0);
  });
});

describe('capacity', () => {
  const cap = { vcpu: 8, memMiB: 4096, diskGiB: 20 };
  test('sums and fits', () => {
    const used = sumResources([
      { vcpu: 2, memMiB: 1024, diskGiB: 5 },
      { vcpu: 1, memMiB: 512, diskGiB: 5 },
    ]);
    assert.deepEqual(used, { vcpu: 3, memMiB: 1536, diskGiB: 10 });
    checkCapacity('vm-x', { vcpu: 5, memMiB: 2560, diskGiB: 10 }, used, cap);
  });
  test('refuses with the numbers of every short resource', () => {
    const used = { vcpu: 7, memMiB: 4000, diskGiB: 1 };
    assert.throws(
      () => checkCapacity('vm-x', { vcpu: 2, memMiB: 512, diskGiB: 1 }, used, cap),
      (e: unknown) =>
        e instanceof FormError &&
        e.code === 'VM_NO_CAPACITY' &&
        e.message.includes('vCPU: needs 2, 1 free of 8') &&
        e.message.includes('memory: needs 512 MiB, 96 MiB free of 4096 MiB') &&
        !e.message.includes('disk:'),
    );
  });
  test('defaults derive from the host: cores x overcommit, RAM minus reserve, free disk', () => {
    const c = hostCapacity({}, tmp);
    assert.ok(c.vcpu >= 4 && c.vcpu % 4 === 0);
    assert.ok(c.memMiB > 0);
    assert.ok(c.diskGiB >= 0);
    assert.deepEqual(hostCapacity({ vcpu: 3, memMiB: 100, diskGiB: 2 }, tmp), { vcpu: 3, memMiB: 100, diskGiB: 2 });
  });
});

describe('config', () => {
  test('defaults, VMM_* env and flags; port 3002 by default', () => {
    const c = loadVmmConfig({ VMM_CONFIG_PATH: undefined } as NodeJS.ProcessEnv, { vmDir: '/tmp/x' });
    assert.equal(c.apiPort, 3002);
    assert.equal(c.network.mode, 'user');
    const e = loadVmmConfig(
      {
        VMM_API_PORT: '4002',
        VMM_LOG_LEVEL: 'debug',
        VMM_IMAGES_DIR: '/srv/img',
        VMM_KERNEL_PATH: '/k',
        WAIT_FOR: 'a:1',
      },
      { apiPort: 5002 },
    );
    assert.equal(e.apiPort, 5002, 'flags beat env');
    assert.equal(e.logLevel, 'debug');
    assert.equal(e.imagesDir, '/srv/img');
    assert.equal(e.kernelPath, '/k');
    assert.equal(e.waitFor, 'a:1');
  });
  test('a config file, and every bad value reported at once', () => {
    const f = join(tmp, 'vmm.json');
    writeFileSync(
      f,
      JSON.stringify({ network: { mode: 'tap', netns: 'x', cidr: '10.129.3.0/24' }, stopTimeoutMs: 2000 }),
    );
    const c = loadVmmConfig({ VMM_CONFIG_PATH: f });
    assert.equal(c.network.mode, 'tap');
    assert.equal(c.network.bridge, 'formbr0');
    assert.equal(c.stopTimeoutMs, 2000);
    writeFileSync(f, JSON.stringify({ network: { mode: 'bridge' }, machine: 'xyz' }));
    assert.throws(
      () => loadVmmConfig({ VMM_CONFIG_PATH: f, VMM_API_PORT: 'abc' }),
      (e: unknown) =>
        isFormError(e) &&
        e.code === 'CONFIG_INVALID' &&
        /\/apiPort/.test(e.message) &&
        /\/network\/mode/.test(e.message) &&
        /\/machine/.test(e.message),
    );
    assert.throws(() => loadVmmConfig({ VMM_CONFIG_PATH: join(tmp, 'missing.json') }), /does not exist/);
  });
});

describe('network helpers', () => {
  test('cidr parsing, unique MACs and TAP names', () => {
    const c = parseCidr('10.129.7.0/24');
    assert.equal(intToIp(c.first), '10.129.7.1');
    assert.equal(intToIp(c.last), '10.129.7.254');
    assert.throws(() => parseCidr('10.129.7.0'), /a.b.c.d\/nn/);
    assert.throws(() => parseCidr('10.129.300.0/24'), /Not an IPv4/);
    assert.match(macFor('vm-1'), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(macFor('vm-1'), macFor('vm-2'));
    assert.notEqual(macFor('vm-1'), macFor('vm-1', 1));
    assert.ok(tapFor('vm-1').length <= 15);
    assert.notEqual(tapFor('vm-1'), tapFor('vm-2'));
  });
});

describe('images and Formpacks', () => {
  test('GET /images lists .img .qcow2 .vmdk .form only', () => {
    const d = join(tmp, 'images');
    rmSync(d, { recursive: true, force: true });
    process.getBuiltinModule('node:fs').mkdirSync(join(d, 'dirpack.form'), { recursive: true });
    for (const f of ['a.img', 'b.qcow2', 'c.vmdk', 'd.form', 'notes.txt']) writeFileSync(join(d, f), 'x');
    const l = listImages(d);
    assert.deepEqual(
      l.map((i) => [i.name, i.format]),
      [
        ['a.img', 'raw'],
        ['b.qcow2', 'qcow2'],
        ['c.vmdk', 'vmdk'],
        ['d.form', 'formpack'],
        ['dirpack.form', 'formpack'],
      ],
    );
    assert.equal(findImage(d, 'b').name, 'b.qcow2');
    assert.throws(() => findImage(d, 'nope'), coded('NOT_FOUND'));
    assert.throws(() => findImage(d, '../etc/passwd'), coded('BAD_REQUEST'));
    assert.deepEqual(listImages(join(tmp, 'no-such-dir')), []);
  });
  test('a missing or broken Formpack is a clear error', () => {
    const d = join(tmp, 'formpacks');
    process.getBuiltinModule('node:fs').mkdirSync(join(d, 'broken'), { recursive: true });
    writeFileSync(join(d, 'broken', 'manifest.json'), '{not json');
    assert.throws(() => resolveFormpack(d, 'absent'), coded('PACK_NOT_FOUND'));
    assert.throws(() => resolveFormpack(d, '../x'), coded('BAD_REQUEST'));
    assert.throws(() => resolveFormpack(d, 'broken'), coded('VM_IMAGE_INVALID', /unreadable/));
    writeFileSync(
      join(d, 'broken', 'manifest.json'),
      JSON.stringify({
        resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
        cmdline: 'x',
        artifacts: { disk: { file: 'disk.qcow2' }, kernel: { file: 'vmlinuz' }, initramfs: { file: 'initramfs.img' } },
      }),
    );
    assert.throws(() => readFormpackDir(join(d, 'broken'), 'broken'), /disk .* is missing/);
  });
});

describe('VM store', () => {
  test('records are written atomically and read back; a corrupt one is reported, not dropped silently', () => {
    const s = new VmStore(join(tmp, 'store'));
    const rec = { id: 'vm-a', name: 'a' } as unknown as Parameters<VmStore['save']>[0];
    s.save(rec);
    writeFileSync(join(s.vmDir('vm-b'), '..', 'junk'), 'not a dir');
    process.getBuiltinModule('node:fs').mkdirSync(s.vmDir('vm-c'));
    writeFileSync(join(s.vmDir('vm-c'), 'vm.json'), '{');
    const { records, bad } = s.loadAll();
    assert.deepEqual(
      records.map((r) => r.id),
      ['vm-a'],
    );
    assert.deepEqual(
      bad.map((b) => b.id),
      ['vm-c'],
    );
    s.remove('vm-a');
    assert.equal(s.loadAll().records.length, 0);
  });
});

/** A fake QMP server on a unix socket, scripted per test. */
function fakeQmp(handler: (msg: Record<string, unknown>, sock: Socket) => void, greet = true) {
  const path = join(tmp, `qmp-${Math.random().toString(36).slice(2)}.sock`);
  const sockets: Socket[] = [];
  const server = createServer((sock) => {
    sockets.push(sock);
    if (greet)
      sock.write(
        `${JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 } }, capabilities: [] } })}\n`,
      );
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl).replace(/^\xff/, '');
        buf = buf.slice(nl + 1);
        handler(JSON.parse(line), sock);
      }
    });
  });
  return new Promise<{ path: string; close: () => void; sockets: Socket[] }>((resolve) =>
    server.listen(path, () =>
      resolve({
        path,
        sockets,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

describe('QMP client', () => {
  test('greeting + qmp_capabilities, ids matched out of order, events, error replies', async () => {
    const seen: string[] = [];
    const srv = await fakeQmp((m, sock) => {
      seen.push(String(m.execute));
      if (m.execute === 'qmp_capabilities') return sock.write(`${JSON.stringify({ return: {}, id: m.id })}\n`);
      if (m.execute === 'slow')
        return setTimeout(() => sock.write(`${JSON.stringify({ return: 'slow-done', id: m.id })}\n`), 30);
      if (m.execute === 'fast') {
        sock.write(`${JSON.stringify({ event: 'STOP', data: {}, timestamp: { seconds: 1, microseconds: 2 } })}\n`);
        // two replies in one chunk, split lines across writes
        const r = JSON.stringify({ return: { running: false }, id: m.id });
        sock.write(r.slice(0, 5));
        return setTimeout(() => sock.write(`${r.slice(5)}\n`), 5);
      }
      if (m.execute === 'bad') {
        return sock.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'nope' }, id: m.id })}\n`);
      }
    });
    const q = await QmpClient.connect(srv.path);
    assert.deepEqual(q.version, { major: 7, minor: 2, micro: 22 });
    const events: string[] = [];
    q.on('event', (e) => events.push(e.event));
    const stopEvent = q.waitEvent('STOP', 1000);
    const [slow, fast] = await Promise.all([q.execute('slow'), q.execute('fast')]);
    assert.equal(slow, 'slow-done');
    assert.deepEqual(fast, { running: false });
    assert.equal((await stopEvent).event, 'STOP');
    assert.deepEqual(events, ['STOP']);
    await assert.rejects(q.execute('bad'), coded('QMP_ERROR', /bad failed: nope/));
    assert.deepEqual(seen, ['qmp_capabilities', 'slow', 'fast', 'bad']);
    q.close();
    await assert.rejects(q.execute('x'), /closed/);
    srv.close();
  });

  test('timeouts, EOF rejects pending commands and emits close; connect errors are clear', async () => {
    const srv = await fakeQmp((m, sock) => {
      if (m.execute === 'qmp_capabilities') sock.write(`${JSON.stringify({ return: {}, id: m.id })}\n`);
      if (m.execute === 'die') sock.destroy();
    });
    const q = await QmpClient.connect(srv.path, { timeoutMs: 100 });
    await assert.rejects(q.execute('never'), coded('TIMEOUT'));
    const closed = new Promise((r) => q.once('close', r));
    const pending = q.execute('die', undefined, 5000);
    await assert.rejects(pending, coded('QMP_ERROR'));
    await closed;
    assert.equal(q.isOpen, false);
    srv.close();
    await assert.rejects(QmpClient.connect(join(tmp, 'nothing.sock')), coded('QMP_ERROR', /ENOENT/));
    const silent = await fakeQmp(() => undefined, false);
    await assert.rejects(QmpClient.connect(silent.path, { connectTimeoutMs: 100 }), coded('TIMEOUT'));
    silent.close();
  });

  test('guest agent mode: 0xFF resync, stale replies dropped, replies in order', async () => {
    const srv = await fakeQmp((m, sock) => {
      if (m.execute === 'guest-sync-delimited') {
        // stale garbage from an earlier client, then the delimited sync answer
        sock.write(`{"return": 999}\n`);
        sock.write(
          Buffer.concat([
            Buffer.from([0xff]),
            Buffer.from(`${JSON.stringify({ return: (m.arguments as { id: number }).id })}\n`),
          ]),
        );
        return;
      }
      if (m.execute === 'guest-ping') return sock.write('{"return": {}}\n');
      if (m.execute === 'guest-info') return sock.write('{"return": {"version": "7.2.22"}}\n');
    }, false);
    const ga = await QmpClient.connect(srv.path, { mode: 'qga' });
    assert.deepEqual(await ga.execute('guest-ping'), {});
    assert.deepEqual(await ga.execute('guest-info'), { version: '7.2.22' });
    ga.close();
    srv.close();
  });
});

describe('wake gate rules (wakeRuleset)', () => {
  test('DNATs each held port of a suspended VM to the gate listener on the bridge address; none = delete', () => {
    const s = wakeRuleset('formbr0', '10.129.7.1', [
      { ip: '10.129.7.2', port: 80, hostPort: 40123 },
      { ip: '10.129.7.2', port: 22, hostPort: 40124 },
    ]);
    assert.match(s, /^table ip form_wake_formbr0\ndelete table ip form_wake_formbr0\n/);
    assert.match(s, /type nat hook prerouting priority dstnat/);
    assert.match(s, /ip daddr 10\.129\.7\.2 tcp dport 80 dnat to 10\.129\.7\.1:40123/);
    assert.match(s, /ip daddr 10\.129\.7\.2 tcp dport 22 dnat to 10\.129\.7\.1:40124/);
    assert.doesNotMatch(s, /hook output/, 'the gate’s own splice from the namespace is never redirected');
    assert.equal(
      wakeRuleset('formbr0', '10.129.7.1', []),
      'table ip form_wake_formbr0\ndelete table ip form_wake_formbr0\n',
    );
    // A rule that needs conntrack is there while the table is: held connections keep their DNAT after
    // their rule goes (keep: after the last rule, only that rule stays; activity.test.ts on real nft).
    assert.match(
      s,
      /chain track \{\n {4}type nat hook prerouting priority dstnat; policy accept;\n {4}ct state established,related accept\n/,
    );
    const kept = wakeRuleset('formbr0', '10.129.7.1', [], true);
    assert.match(
      kept,
      /^table ip form_wake_formbr0\ndelete table ip form_wake_formbr0\ntable ip form_wake_formbr0 \{\n {2}chain track \{/,
    );
    assert.doesNotMatch(kept, /dnat|reject/);
  });

  test('refuses what is not an address or a port (nothing reaches nft)', () => {
    for (const bad of ['10.0.0.1; flush ruleset', '300.1.1.1', '']) {
      assert.throws(
        () => wakeRuleset('formbr0', '10.129.7.1', [{ ip: bad, port: 80, hostPort: 4000 }]),
        coded('VM_BAD_ARGUMENT'),
      );
    }
    assert.throws(
      () => wakeRuleset('formbr0', '10.129.7.1', [{ ip: '10.129.7.2', port: 0, hostPort: 4000 }]),
      coded('VM_BAD_ARGUMENT'),
    );
  });
});

describe('nft table names and addresses (nft-table.ts)', () => {
  test('one table per bridge and purpose; only dotted-quad IPv4 addresses pass', () => {
    assert.equal(bridgeTableName('egress', 'formbr0'), 'form_egress_formbr0');
    assert.equal(bridgeTableName('wake', 'br-1.x'), 'form_wake_br_1_x');
    for (const ip of ['10.129.0.2', '0.0.0.0', '255.255.255.255']) assert.equal(isIpv4(ip), true, ip);
    for (const ip of [
      '10.129.0.256',
      '10.129.0.2/24',
      '10.129.0',
      ' 10.129.0.2',
      '1.2.3.4; drop',
      '::1',
      '',
      '010.0.0.1',
      '10.129.00.2',
    ]) {
      assert.equal(isIpv4(ip), false, ip);
    }
  });
});
