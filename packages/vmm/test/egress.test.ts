// Instance egress (issue 18 "Instances reach out"): a "host" namespace with the node's bridge and an
// eth0 to an "internet" namespace (198.51.100.0/24, an HTTP server and a DNS server), and "instance"
// namespaces on the bridge by veth standing in for VMs (fast). Each hole has a control that opens it
// (the rule taken away) so the test can fail.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import type { Socket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import type { FormError } from '@formation/interface';
import { requireOrSkip, until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { parseResolvConf, parseUpstreams, resolvConfPath, startDnsForwarder } from '../src/dns-forwarder.ts';
import { EgressFirewall, egressRuleset, egressTableName, listEgressTables } from '../src/egress.ts';
import { bindUdpInNetns } from '../src/netns-socket.ts';
import { VmNetwork } from '../src/network.ts';

const log = createLogger('silent');

describe('egress rules and guest DNS: pure parts', () => {
  test('the ruleset names our tables after the bridge and refuses what is not an interface or address', () => {
    const text = egressRuleset({ bridge: 'formbr0', cidr: '10.129.7.0/24', egress: 'on' }, [
      { port: 'ftapabc', ip: '10.129.7.2', egress: false },
    ]);
    assert.equal(egressTableName('formbr0'), 'form_egress_formbr0');
    assert.match(text, /^table bridge form_egress_formbr0\ndelete table bridge form_egress_formbr0\n/);
    assert.match(text, /"ftapabc" \. 10\.129\.7\.2/);
    assert.match(text, /set noegress \{\n\s+type ifname\n\s+elements = \{ "ftapabc" \}/);
    assert.match(text, /ip saddr 10\.129\.7\.0\/24 ip daddr != 10\.128\.0\.0\/9 oifname != "formbr0" masquerade/);
    assert.match(
      egressRuleset({ bridge: 'formbr0', cidr: '10.129.7.0/24', egress: 'off' }),
      /iifname "formbr0" counter drop comment "egress off on this node"/,
    );
    // A port name or address is spliced into nft's language: anything else is refused, nothing written.
    for (const bad of ['x" ; flush ruleset ; "', 'a'.repeat(16), '']) {
      assert.throws(
        () =>
          egressRuleset({ bridge: 'formbr0', cidr: '10.129.7.0/24', egress: 'on' }, [
            { port: bad, ip: '10.129.7.2', egress: true },
          ]),
        (e: FormError) => e.code === 'VM_BAD_ARGUMENT',
      );
    }
    assert.throws(
      () =>
        egressRuleset({ bridge: 'formbr0', cidr: '10.129.7.0/24', egress: 'on' }, [
          { port: 'ftap1', ip: '10.129.7.2 } ; flush ruleset', egress: true },
        ]),
      (e: FormError) => e.code === 'VM_BAD_ARGUMENT' && /not an IPv4 address/.test(e.message),
    );
    assert.throws(
      () => egressRuleset({ bridge: 'formbr0', cidr: '10.129.7.0', egress: 'on' }),
      (e: FormError) => e.code === 'CONFIG_INVALID',
    );
  });

  test('two VMs created at once never get the same address, MAC or TAP (found by the VM test)', async () => {
    const net = new VmNetwork({ mode: 'tap', bridge: 'fdebr9', cidr: '10.129.9.0/24' }, log);
    const none = { ips: new Set<string>(), macs: new Set<string>(), taps: new Set<string>() };
    const [a, b] = await Promise.all([net.assign('vm-a', none, []), net.assign('vm-b', none, [])]);
    assert.equal(a.ip, '10.129.9.2/24');
    assert.equal(b.ip, '10.129.9.3/24');
    net.settle(a);
    const c = await net.assign('vm-c', { ...none, ips: new Set(['10.129.9.3']) }, []);
    assert.equal(c.ip, '10.129.9.2/24', 'a settled address is free again when no record holds it');
  });

  test('upstreams come from resolv.conf (no loopback inside a namespace) or a checked list', () => {
    const conf =
      '# generated\nnameserver 127.0.0.53\nnameserver 198.51.100.53 # isp\nnameserver ::1\nsearch x\nnameserver 999.1.1.1\n';
    assert.deepEqual(parseResolvConf(conf, { allowLoopback: false }), [{ host: '198.51.100.53', port: 53 }]);
    assert.deepEqual(
      parseResolvConf(conf, { allowLoopback: true }).map((u) => u.host),
      ['127.0.0.53', '198.51.100.53'],
    );
    assert.deepEqual(parseUpstreams('198.51.100.53, 203.0.113.1:5353'), [
      { host: '198.51.100.53', port: 53 },
      { host: '203.0.113.1', port: 5353 },
    ]);
    for (const bad of ['dns.google', '1.2.3.4:0', '1.2.3.4:70000', '300.1.1.1']) {
      assert.throws(
        () => parseUpstreams(bad),
        (e: FormError) => e.code === 'CONFIG_INVALID',
        bad,
      );
    }
    assert.equal(resolvConfPath(undefined), '/etc/resolv.conf');
    assert.equal(resolvConfPath('fde-no-such-ns'), '/etc/resolv.conf');
  });
});

const skip = requireOrSkip('egress integration test', { root: true, programs: ['ip', 'nft', 'curl', 'dig'] });
const tag = String(process.pid % 100000);
const H = `fde${tag}h`; // the node's namespace
const N = `fde${tag}n`; // the internet, with the visitor 198.51.100.200
const I = `fde${tag}i`; // an instance with egress
const J = `fde${tag}j`; // an instance with egress: false
const BR = 'fdebr0';
const CIDR = '10.129.250.0/24';
const GW = '10.129.250.1';
const HOST_ADDR = '198.51.100.11';
const VISITOR = '198.51.100.200';
const DOMAIN = 'dev.formation.local';

/** A command in a namespace, asynchronously: the DNS forwarder under test answers from this process. */
function sh(ns: string, cmd: string, timeout = 15_000): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', ns, 'sh', '-c', cmd], { encoding: 'utf8', timeout }, (err, stdout, stderr) =>
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: `${stdout}${stderr}`.trim() }),
    );
  });
}
const ip = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
const curl = (ns: string, url: string, extra = ''): Promise<{ status: number | null; out: string }> =>
  sh(ns, `curl -sS -m 2 ${extra} ${url}`);

/** veth pair `a` (in `nsA`) <-> `b` (in `nsB`). */
function veth(a: string, nsA: string, b: string, nsB: string): void {
  ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  ip(['link', 'set', a, 'netns', nsA]);
  ip(['link', 'set', b, 'netns', nsB]);
}

describe('instance egress in namespaces (root)', { skip }, () => {
  const procs: ChildProcess[] = [];
  let dnsServer: Socket | undefined;
  const upstreamAsked: string[] = [];
  const hits: string[] = [];
  let net: VmNetwork;
  const records = new Map<string, string[]>([['hello', ['10.129.250.77']]]);

  before(async () => {
    for (const ns of [H, N, I, J]) {
      spawnSync('ip', ['netns', 'del', ns]);
      ip(['netns', 'add', ns]);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // host eth0 <-> internet; the host's default route goes there (its "ISP").
    veth(`fde${tag}e`, H, `fde${tag}x`, N);
    ip(['-n', H, 'link', 'set', `fde${tag}e`, 'name', 'eth0']);
    ip(['-n', H, 'addr', 'add', `${HOST_ADDR}/24`, 'dev', 'eth0']);
    ip(['-n', H, 'link', 'set', 'eth0', 'up']);
    ip(['-n', N, 'addr', 'add', `${VISITOR}/24`, 'dev', `fde${tag}x`]);
    ip(['-n', N, 'link', 'set', `fde${tag}x`, 'up']);
    ip(['-n', H, 'route', 'add', 'default', 'via', VISITOR]);
    // The internet side is hostile: it routes the instance range to the host and holds formnet
    // addresses (another node's slice 10.200.0.5, a member address 10.128.0.5) it should never get.
    ip(['-n', N, 'route', 'add', CIDR, 'via', HOST_ADDR]);
    ip(['-n', N, 'addr', 'add', '10.200.0.5/32', 'dev', 'lo']);
    ip(['-n', N, 'addr', 'add', '10.128.0.5/32', 'dev', 'lo']);
    // HTTP servers answering with the caller's address: the visitor (and the leaked formnet address), and one in the instance.
    const server = (ns: string, port: number, name: string): void => {
      const code = `require('node:http').createServer((q,s)=>{process.stdout.write(q.socket.localAddress+' '+q.socket.remoteAddress+'\\n');s.end('${name} sees '+q.socket.remoteAddress)}).listen(${port},'0.0.0.0',()=>process.stdout.write('up\\n'))`;
      const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      p.stdout?.on('data', (d: Buffer) => hits.push(...d.toString().trim().split('\n')));
      procs.push(p);
    };
    server(N, 18080, 'visitor');
    server(I, 18081, 'instance');
    // The internet's DNS server (the upstream the forwarder relays to).
    [dnsServer] = await bindUdpInNetns(N, [`${VISITOR}:53`]);
    dnsServer?.on('message', (msg, r) => {
      const q = dnsPacket.decode(msg);
      const name = q.questions?.[0]?.name ?? '';
      upstreamAsked.push(name);
      const answers: dnsPacket.Answer[] =
        name === 'visitor.example' ? [{ type: 'A', name, ttl: 60, data: VISITOR }] : [];
      dnsServer?.send(
        dnsPacket.encode({
          type: 'response',
          id: q.id ?? 0,
          flags: answers.length ? 0 : 3,
          questions: q.questions ?? [],
          answers,
        }),
        r.port,
        r.address,
      );
    });
    await until('both HTTP servers listening', () => hits.filter((h) => h === 'up').length === 2, 10_000);
    net = new VmNetwork({ mode: 'tap', netns: H, bridge: BR, cidr: CIDR }, log, {
      egress: 'on',
      dns: { domain: DOMAIN, records: (n) => records.get(n) },
      dnsUpstreams: [{ host: VISITOR, port: 53 }],
    });
    await net.init();
    // Instances: veths on the bridge, registered like a VM's TAP.
    for (const [ns, n, egress] of [
      [I, 2, true],
      [J, 3, false],
    ] as const) {
      veth(`fde${tag}${ns.slice(-1)}p`, H, `fde${tag}${ns.slice(-1)}v`, ns);
      const port = `fde${tag}${ns.slice(-1)}p`;
      await net.attach({
        mode: 'tap',
        ip: `10.129.250.${n}/24`,
        gateway: GW,
        dns: GW,
        mac: '',
        tap: port,
        netns: H,
        forwards: [],
        egress,
      });
      ip(['-n', ns, 'addr', 'add', `10.129.250.${n}/24`, 'dev', `fde${tag}${ns.slice(-1)}v`]);
      ip(['-n', ns, 'link', 'set', `fde${tag}${ns.slice(-1)}v`, 'up']);
      ip(['-n', ns, 'route', 'add', 'default', 'via', GW]);
    }
  });

  after(async () => {
    await net?.close().catch(() => undefined);
    dnsServer?.close();
    for (const p of procs) if (p.pid && p.exitCode === null) process.kill(p.pid);
    for (const ns of [H, N, I, J]) spawnSync('ip', ['netns', 'del', ns]);
  });

  /** Run `fn` with one of our tables (or the leak guard) taken away, then put everything back. */
  async function without(what: 'inet' | 'bridge' | 'guard', fn: () => Promise<void>): Promise<void> {
    if (what === 'guard') ip(['-n', H, 'route', 'del', 'unreachable', '10.128.0.0/9']);
    else ip(['netns', 'exec', H, 'nft', 'delete', 'table', what, egressTableName(BR)]);
    try {
      await fn();
    } finally {
      if (what === 'guard') ip(['-n', H, 'route', 'add', 'unreachable', '10.128.0.0/9']);
      else await net.init();
    }
  }

  test('an instance reaches the internet, masqueraded to the host address', async () => {
    const r = await curl(I, `http://${VISITOR}:18080/`);
    assert.equal(r.status, 0, r.out);
    assert.equal(r.out, `visitor sees ${HOST_ADDR}`);
  });

  test('the internet cannot open a connection to an instance, not even with a formnet source address', async () => {
    const direct = await curl(N, 'http://10.129.250.2:18081/');
    assert.notEqual(direct.status, 0, direct.out);
    const spoofed = await curl(N, 'http://10.129.250.2:18081/', '--interface 10.128.0.5');
    assert.notEqual(spoofed.status, 0, spoofed.out);
    // Controls: without our forward rules the internet walks in; without the leak guard a formnet source does.
    await without('inet', async () =>
      assert.equal((await curl(N, 'http://10.129.250.2:18081/')).out, `instance sees ${VISITOR}`),
    );
    await without('guard', async () =>
      assert.equal(
        (await curl(N, 'http://10.129.250.2:18081/', '--interface 10.128.0.5')).out,
        'instance sees 10.128.0.5',
      ),
    );
    assert.notEqual((await curl(N, 'http://10.129.250.2:18081/')).status, 0, 'closed again');
  });

  test('formnet destinations are refused locally, never sent to the default gateway', async () => {
    const before = hits.length;
    const r = await curl(I, 'http://10.200.0.5:18080/', '-w "%{errormsg}"');
    assert.notEqual(r.status, 0);
    assert.match(r.out, /No route to host|Couldn't connect/);
    assert.equal(hits.length, before, 'the internet saw nothing');
    // Control: without the leak guard the host's default route carries formnet to the internet.
    await without('guard', async () => assert.match((await curl(I, 'http://10.200.0.5:18080/')).out, /^visitor sees/));
  });

  test('egress: false keeps an instance inside formnet; a guest using another address is dropped', async () => {
    const r = await curl(J, `http://${VISITOR}:18080/`);
    assert.notEqual(r.status, 0, r.out);
    // It still has its gateway's DNS for formnet names (formnet is allowed), but DNS is no way out:
    // other names are refused, never relayed upstream.
    assert.equal((await sh(J, `dig +short +time=2 +tries=1 @${GW} hello.${DOMAIN}`)).out, '10.129.250.77');
    const asked = upstreamAsked.length;
    assert.match((await sh(J, `dig +time=2 +tries=1 @${GW} exfil-data.visitor.example`)).out, /status: REFUSED/);
    assert.equal(upstreamAsked.length, asked, 'nothing relayed for a VM without egress');
    await without('bridge', async () =>
      assert.equal((await curl(J, `http://${VISITOR}:18080/`)).out, `visitor sees ${HOST_ADDR}`),
    );
    // Spoofing: the egress instance sends from an address that is not its own.
    await sh(I, 'ip addr add 10.129.250.9/32 dev lo');
    const spoof = await curl(I, `http://${VISITOR}:18080/`, '--interface 10.129.250.9');
    assert.notEqual(spoof.status, 0, spoof.out);
    await without('bridge', async () =>
      assert.equal(
        (await curl(I, `http://${VISITOR}:18080/`, '--interface 10.129.250.9')).out,
        `visitor sees ${HOST_ADDR}`,
      ),
    );
    await sh(I, 'ip addr del 10.129.250.9/32 dev lo');
  });

  test('guest DNS: formnet names from the records, others forwarded upstream, nothing for the internet side', async () => {
    assert.equal((await sh(I, `dig +short +time=2 +tries=1 @${GW} hello.${DOMAIN}`)).out, '10.129.250.77');
    assert.equal((await sh(I, 'dig +short +time=2 +tries=1 @10.129.250.1 visitor.example')).out, VISITOR);
    assert.ok(upstreamAsked.includes('visitor.example'));
    const nx = await sh(I, `dig +time=2 +tries=1 @${GW} nobody.${DOMAIN}`);
    assert.match(nx.out, /status: NXDOMAIN/);
    assert.equal(
      upstreamAsked.some((n) => n.endsWith(DOMAIN)),
      false,
      'formnet names never leave the node',
    );
    // Not an open resolver: the internet side asks the gateway address and gets nothing.
    const open = await sh(N, `dig +time=1 +tries=1 @${GW} visitor.example`);
    assert.match(open.out, /timed out|no servers could be reached/);
    // With the upstream gone, a clear SERVFAIL (not a hang).
    const dead = await startDnsForwarder({
      netns: H,
      host: GW,
      port: 5354,
      clientCidr: CIDR,
      upstreams: [{ host: VISITOR, port: 5999 }],
      timeoutMs: 300,
      logger: log,
    });
    try {
      assert.match((await sh(I, `dig -p 5354 +time=3 +tries=1 @${GW} visitor.example`)).out, /status: SERVFAIL/);
    } finally {
      await dead.close();
    }
  });

  test('install is idempotent, stop removes exactly our rules, and nothing reaches the root namespace', async () => {
    await sh(H, 'nft add table inet fdeforeign');
    await net.init();
    await net.init();
    const ours = await listEgressTables(H);
    assert.deepEqual(ours.sort(), [`bridge ${egressTableName(BR)}`, `inet ${egressTableName(BR)}`]);
    const bridgeRules = (await sh(H, `nft list table bridge ${egressTableName(BR)}`)).out;
    assert.equal(
      bridgeRules.match(/fde\d+[ij]p/g)?.length,
      5,
      'the ports survive a re-install (2 ports, 2 addresses, 1 without egress)',
    );
    assert.equal(
      (await listEgressTables()).some((t) => t.endsWith(egressTableName(BR))),
      false,
      'root namespace untouched',
    );
    assert.equal(ip(['route']).includes('10.129.250.'), false);
    await net.close();
    assert.deepEqual(await listEgressTables(H), []);
    assert.match((await sh(H, 'nft list tables')).out, /inet fdeforeign/, 'a table that is not ours stays');
    assert.equal(ip(['-n', H, 'route', 'show', 'exact', '10.128.0.0/9']).trim(), '', 'the leak guard we added is gone');
    assert.equal((await sh(H, 'sysctl -n net.ipv4.ip_forward')).out, '0', 'forwarding back as it was');
    await net.close(); // twice is fine
  });
});

describe('EgressFirewall without nft', { skip }, () => {
  test('a clear HOST_UNSUPPORTED error, nothing installed', async () => {
    const fw = new EgressFirewall({ bridge: BR, cidr: CIDR, egress: 'on' }, log);
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await assert.rejects(fw.install(), (e: FormError) => e.code === 'HOST_UNSUPPORTED' && /nft/.test(e.message));
    } finally {
      process.env.PATH = path;
    }
  });
});
