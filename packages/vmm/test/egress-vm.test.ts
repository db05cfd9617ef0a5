// A real VM (TCG) on the node's bridge reaches a server on the "internet" by address and by a name its
// gateway's DNS forwarder relays upstream; a VM created with egress: false does not (issue 18).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import type { Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { egressTableName, listEgressTables } from '../src/egress.ts';
import { bindUdpInNetns } from '../src/netns-socket.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { fixture, integrationOpts, linkedNamespaces, pidsMentioning, qemuVmmConfig } from './helpers.ts';

const opts = integrationOpts();
const tag = String(process.pid % 100000);
const H = `fde${tag}vh`;
const N = `fde${tag}vn`;
const BR = 'fdevbr0';
const VISITOR = '198.51.100.200';
const HOST_ADDR = '198.51.100.12';
const ip = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

describe('a real VM reaches the internet through the node (TCG, root)', { skip: opts.skip }, () => {
  let tmp: string;
  let vmm: VmmService;
  let server: ChildProcess | undefined;
  let dnsServer: Socket | undefined;
  let up = false;
  let closed = false;

  before(async () => {
    linkedNamespaces(
      { netns: H, ifname: `fde${tag}ve`, addr: `${HOST_ADDR}/24` },
      { netns: N, ifname: `fde${tag}vx`, addr: `${VISITOR}/24` },
    );
    ip(['-n', H, 'route', 'add', 'default', 'via', VISITOR]);
    const code = `require('node:http').createServer((q,s)=>s.end('visitor sees '+q.socket.remoteAddress+'\\n')).listen(18080,'${VISITOR}',()=>process.stdout.write('up\\n'))`;
    server = spawn('ip', ['netns', 'exec', N, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    server.stdout?.on('data', () => {
      up = true;
    });
    [dnsServer] = await bindUdpInNetns(N, [`${VISITOR}:53`]);
    dnsServer?.on('message', (msg, r) => {
      const q = dnsPacket.decode(msg);
      const name = q.questions?.[0]?.name ?? '';
      const hit = name === 'visitor.example' && q.questions?.[0]?.type === 'A';
      const answers: dnsPacket.Answer[] = hit ? [{ type: 'A', name, ttl: 60, data: VISITOR }] : [];
      dnsServer?.send(
        dnsPacket.encode({ type: 'response', id: q.id ?? 0, flags: 0, questions: q.questions ?? [], answers }),
        r.port,
        r.address,
      );
    });
    await until('the visitor HTTP server', () => up, 10_000);
    tmp = mkdtempSync('/tmp/fde-vm-');
    const config = qemuVmmConfig(tmp, fixture().formpacksDir, {
      dnsUpstream: VISITOR,
      network: { mode: 'tap', netns: H, createNetns: false, bridge: BR, cidr: '10.129.251.0/24' },
    });
    vmm = await createVmmService({
      config,
      logger: createLogger((process.env.FDE_LOG ?? 'silent') as 'silent'),
      dns: { domain: 'dev.formation.local', records: (n) => (n === 'hello' ? ['10.129.251.77'] : undefined) },
    });
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    if (!closed) await vmm?.close({ stopVms: true });
    dnsServer?.close();
    if (server?.pid && server.exitCode === null) process.kill(server.pid);
    const left = tmp ? pidsMentioning(tmp) : [];
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    for (const ns of [H, N]) spawnSync('ip', ['netns', 'del', ns]);
    assert.deepEqual(left, []);
  });

  test('wget by name from the guest, masqueraded; egress: false gets nothing; stop removes the rules', async () => {
    const [a, b] = await Promise.all([
      vmm.manager.create({ formpack: fixture().id, name: 'egress-on' }),
      vmm.manager.create({ formpack: fixture().id, name: 'egress-off', egress: false }),
    ]);
    assert.equal(a.network.egress, true);
    assert.equal(b.network.egress, false);
    await Promise.all([vmm.manager.waitReady(a.id, 120_000), vmm.manager.waitReady(b.id, 120_000)]);
    const sh = (id: string, cmd: string) => vmm.manager.exec(id, '/bin/bash', ['-c', cmd], 20_000);
    // An HTTP GET with bash's /dev/tcp (the fixture's static busybox wget crashes under this guest).
    const get = (host: string) =>
      `exec 3<>/dev/tcp/${host}/18080 && printf 'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n' >&3 && timeout 5 cat <&3`;
    assert.match((await sh(a.id, 'cat /etc/resolv.conf')).stdout, /nameserver 10\.129\.251\.1/);
    let last = '';
    const r = await until(
      'the guest reaches the visitor by name',
      async () => {
        // The name goes through the gateway's forwarder to the internet's DNS server.
        const x = await sh(
          a.id,
          `v=$(getent ahostsv4 visitor.example | head -1 | cut -d" " -f1); echo "resolved: $v"; ${get('$v')} 2>&1`,
        );
        last = `${x.stdout}${x.stderr}`;
        return /visitor sees/.test(x.stdout) ? x : undefined;
      },
      60_000,
      1000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last try: ${last}`);
    });
    assert.match(r.stdout, new RegExp(`\r\n\r\nvisitor sees ${HOST_ADDR.replaceAll('.', '\\.')}\n$`));
    assert.match((await sh(a.id, 'getent hosts hello.dev.formation.local')).stdout, /10\.129\.251\.77/);
    const off = await sh(b.id, `timeout 8 bash -c "${get(VISITOR).replaceAll('"', '\\"')}" 2>&1; echo rc=$?`);
    assert.doesNotMatch(off.stdout, /visitor sees/);
    assert.match(off.stdout, /rc=[1-9]/);
    assert.deepEqual((await listEgressTables(H)).sort(), [
      `bridge ${egressTableName(BR)}`,
      `inet ${egressTableName(BR)}`,
    ]);
    await vmm.manager.destroyAll();
    closed = true;
    await vmm.close({ stopVms: true });
    assert.deepEqual(await listEgressTables(H), [], 'stopping the VMM removes its rules');
  });
});
