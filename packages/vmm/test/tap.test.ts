import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@formation/service';
import { createVmmService, type VmmService } from '../src/service.ts';
import { fixture, inNetns, integrationOpts, pidsMentioning, qemuVmmConfig, sleep } from './helpers.ts';

const opts = integrationOpts();
const NS = `fvmmt${process.pid}`;

describe('tap networking in a namespace the VMM creates', { skip: opts.skip }, () => {
  let tmp: string;
  let vmm: VmmService;

  before(async () => {
    const fx = fixture();
    tmp = mkdtempSync('/tmp/fvmm-tap-');
    const config = qemuVmmConfig(tmp, fx.formpacksDir, {
      network: { mode: 'tap', netns: NS, createNetns: true, bridge: 'fvbr0', cidr: '10.129.77.0/24' },
    });
    vmm = await createVmmService({ config, logger: createLogger('silent') });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    const leftNs = existsSync(`/run/netns/${NS}`);
    if (leftNs) spawnSync('ip', ['netns', 'del', NS]);
    const left = pidsMentioning(tmp);
    rmSync(tmp, { recursive: true, force: true });
    assert.equal(leftNs, false, 'the namespace the VMM created is removed on close');
    assert.deepEqual(left, []);
  });

  test('a VM gets a TAP on the bridge and an address from the range; ping and HTTP from the namespace', async () => {
    assert.ok(existsSync(`/run/netns/${NS}`), 'namespace created');
    assert.match(execFileSync('ip', ['-n', NS, '-br', 'addr', 'show', 'fvbr0']).toString(), /10\.129\.77\.1\/24/);
    const a = await vmm.manager.create({ formpack: fixture().id, name: 'tap-a' });
    const b = await vmm.manager.create({ formpack: fixture().id, name: 'tap-b', start: false });
    assert.equal(a.network.ip, '10.129.77.2/24');
    assert.equal(b.network.ip, '10.129.77.3/24', 'addresses are never reused while allocated');
    assert.notEqual(a.network.mac, b.network.mac);
    assert.notEqual(a.network.tap, b.network.tap);
    const links = execFileSync('ip', ['-n', NS, '-br', 'link']).toString();
    assert.match(links, new RegExp(`${a.network.tap}.*UP`));
    assert.match(execFileSync('ip', ['-n', NS, 'link', 'show', a.network.tap as string]).toString(), /master fvbr0/);
    assert.equal(
      execFileSync('ip', ['-br', 'link'])
        .toString()
        .includes(a.network.tap as string),
      false,
      'no TAP on the host',
    );
    await vmm.manager.waitReady(a.id, 90_000);
    let ping = inNetns(NS, 'ping -c1 -W1 10.129.77.2');
    for (let i = 0; i < 20 && ping.status !== 0; i++) {
      await sleep(250);
      ping = inNetns(NS, 'ping -c1 -W1 10.129.77.2');
    }
    assert.equal(ping.status, 0, ping.out);
    let http = inNetns(NS, 'curl -s -m 2 http://10.129.77.2/');
    for (let i = 0; i < 20 && !http.out.includes('hello'); i++) {
      await sleep(250);
      http = inNetns(NS, 'curl -s -m 2 http://10.129.77.2/');
    }
    assert.match(http.out, /hello from the vmm fixture/);
    const r = await vmm.manager.exec(a.id, '/bin/sh', ['-c', 'ip -br addr show eth0; ip route']);
    assert.match(r.stdout, /10\.129\.77\.2\/24/);
    assert.match(r.stdout, /default via 10\.129\.77\.1/);
    // the host's own network never sees the range
    assert.equal(execFileSync('ip', ['route']).toString().includes('10.129.77.'), false);
  });

  test('destroy removes the TAP; a new VM may then take the freed address', async () => {
    const [a, b] = vmm.manager.list().sort((x, y) => x.name.localeCompare(y.name));
    assert.ok(a && b);
    await vmm.manager.destroy(a.id);
    assert.equal(inNetns(NS, `ip link show ${a.network.tap}`).status !== 0, true, 'TAP removed');
    await vmm.manager.destroy(b.id);
    assert.deepEqual(pidsMentioning(tmp), []);
    const c = await vmm.manager.create({ formpack: fixture().id, name: 'tap-c', start: false });
    assert.equal(c.network.ip, '10.129.77.2/24');
    await vmm.manager.destroy(c.id);
  });
});
