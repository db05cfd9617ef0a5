// HTTPS that ends inside the attested guest (issue 19), end to end with real parts: a TCG VM built from
// a Formfile with `HTTPS 8080` on a node host's bridge (namespace fdh<tag>h, public 198.51.100.11), the
// ingress passing :443 through by SNI, Pebble (RFC 8555 test CA) with pebble-challtestsrv as the public
// DNS in their own namespace (fdh<tag>p, 203.0.113.60), and a visitor (fdh<tag>v, 198.51.100.200).
// The guest gets its certificate by TLS-ALPN-01 through the ingress; the visitor's curl verifies it
// against Pebble's root and reaches the app; the served key is the one in the signed attestation report.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  AttestService,
  configureGuestTls,
  expectedMeasurement,
  spkiSha256,
  verifyReport,
  verifyServedCertificate,
} from '@formation/attest';
import { generateKeyPair, randomHex } from '@formation/identity';
import { requireOrSkip, until } from '@formation/interface/testing';
import { type BuiltFormpack, cachedFormpack } from '@formation/pack/testing';
import { createLogger } from '@formation/service';
import { createVmmService, type VmmService, type VmView } from '@formation/vmm';
import { integrationBlocker, qemuVmmConfig } from '@formation/vmm/testing';
import { type PebbleCa, startPebble } from './fixtures/pebble.ts';

// pebble and pebble-challtestsrv: apt-get install pebble.
const skip = requireOrSkip('in-guest HTTPS e2e test', {
  programs: ['openssl', 'pebble', 'pebble-challtestsrv', 'curl'],
  check: () => integrationBlocker(),
});
const tag = String(process.pid % 100000);
const NS = { host: `fdh${tag}h`, ca: `fdh${tag}p`, vis: `fdh${tag}v` };
const PUBLIC = '198.51.100.11';
const VISITOR = '198.51.100.200';
const CA_IP = '203.0.113.60';
const NAME = 'hello.fdh.test';
/** A custom domain the network verified for the instance (the ingress routes it; the node names it to the guest). */
const CUSTOM = 'shop.example.com';
const SERVED = new URL('../../attest/test/fixtures/served-cert.ts', import.meta.url).pathname;
const INGRESS = new URL('../../ingress/test/fixtures/node-ingress.ts', import.meta.url).pathname;
const ip = (args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, cmd: string[], input?: string) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });

const REPLY = `#!/bin/sh
# one HTTP answer per connection (socat EXEC): read the request head, answer
while read -r l; do [ "$l" = "$(printf '\\r')" ] && break; [ -z "$l" ] && break; done
printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from the attested guest\\n'
`;

/** The Formpack (real builder), cached under /var/tmp by the guest files and this context. */
const httpsFormpack = () =>
  cachedFormpack(
    '/var/tmp/formation-https-fixture',
    {
      Formfile:
        'NAME hello\nVCPU 1\nMEM 512\nDISK 5\nEXPOSE 8080\nHTTPS 8080\nCOPY reply.sh /app/reply.sh\n' +
        'ENTRYPOINT ["socat", "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:/app/reply.sh"]\n',
      'reply.sh': { text: REPLY, mode: 0o755 },
    },
    'https-test',
  );

/** The visitor's GET of https://`host`/ at the ingress, checked against `caFile` (or the system's roots). */
const visit = (host: string, caFile?: string) =>
  inNs(NS.vis, [
    'curl',
    '-sS',
    '--max-time',
    '10',
    ...(caFile ? ['--cacert', caFile] : []),
    '--resolve',
    `${host}:443:${PUBLIC}`,
    `https://${host}/`,
  ]);

/** The certificate the visitor is served for NAME through the ingress (PEM, leaf only). */
function servedCertificate(): string {
  const out = inNs(NS.vis, [
    'sh',
    '-c',
    `openssl s_client -connect ${PUBLIC}:443 -servername ${NAME} </dev/null 2>/dev/null | openssl x509`,
  ]);
  return out;
}

describe(
  'HTTPS ends in the attested guest: ACME through the ingress, checked by a visitor',
  { skip, timeout: 900_000 },
  () => {
    let tmp = '';
    let vmm: VmmService | undefined;
    let vm: VmView;
    let fx: BuiltFormpack;
    const procs: ChildProcess[] = [];
    const nodeKey = generateKeyPair();
    let ca: PebbleCa | undefined;
    const timings: Record<string, number> = {};

    const start = (ns: string, cmd: string[], env: Record<string, string> = {}): ChildProcess => {
      const p = spawn('ip', ['netns', 'exec', ns, ...cmd], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      });
      procs.push(p);
      return p;
    };

    before(async () => {
      let t = Date.now();
      fx = await httpsFormpack();
      timings.build = Date.now() - t;
      tmp = mkdtempSync('/tmp/fdh-https-');
      for (const ns of Object.values(NS)) {
        spawnSync('ip', ['netns', 'del', ns]);
        ip(['netns', 'add', ns]);
        ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      }
      const link = (a: string, nsA: string, addrA: string, b: string, nsB: string, addrB: string) => {
        ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
        ip(['link', 'set', a, 'netns', nsA]);
        ip(['link', 'set', b, 'netns', nsB]);
        ip(['-n', nsA, 'addr', 'add', addrA, 'dev', a]);
        ip(['-n', nsB, 'addr', 'add', addrB, 'dev', b]);
        ip(['-n', nsA, 'link', 'set', a, 'up']);
        ip(['-n', nsB, 'link', 'set', b, 'up']);
      };
      // The visitor and the node share the "internet" 198.51.100.0/24; the CA sits behind the node on
      // 203.0.113.0/24 (the node's default route), so the guest's egress reaches it masqueraded.
      link(`fdh${tag}hv`, NS.host, `${PUBLIC}/24`, `fdh${tag}vh`, NS.vis, `${VISITOR}/24`);
      link(`fdh${tag}hp`, NS.host, '203.0.113.1/24', `fdh${tag}ph`, NS.ca, `${CA_IP}/24`);
      ip(['-n', NS.host, 'route', 'add', 'default', 'via', CA_IP]);
      ip(['-n', NS.ca, 'route', 'add', 'default', 'via', '203.0.113.1']);
      inNs(NS.host, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);

      // Pebble as the CA; its DNS answers every A query with the node's address.
      ca = await startPebble({ netns: NS.ca, caIp: CA_IP, answerIp: PUBLIC, dir: tmp, start });

      const config = qemuVmmConfig(tmp, fx.formpacksDir, {
        stopTimeoutMs: 5000,
        dataDiskMiB: 0,
        dnsUpstream: `${CA_IP}:8053`,
        network: { mode: 'tap', netns: NS.host, createNetns: false, bridge: 'fdhbr0', cidr: '10.129.246.0/24' },
        capacity: { vcpu: 4, memMiB: 2048, vcpuOvercommit: 4, reserveMemMiB: 0 },
      });
      vmm = await createVmmService({ config, logger: createLogger((process.env.FDH_LOG ?? 'silent') as 'silent') });
      t = Date.now();
      vm = await vmm.manager.create({ formpack: fx.id, name: 'hello' });
      vm = await vmm.manager.waitReady(vm.id, 180_000);
      timings.boot = Date.now() - t;
      const address = vm.network.ip.split('/')[0] as string;
      // The node's ingress on the public address: NAME → the VM, TLS passed through by SNI.
      const instances = [
        {
          id: 'i-hello',
          hosts: [NAME, CUSTOM],
          expose: [443, 8080],
          healthchecked: false,
          replicas: [{ id: 'r1', address, running: true }],
        },
      ];
      const ing = start(NS.host, [process.execPath, INGRESS, PUBLIC, JSON.stringify(instances)], {
        FORM_LOG_LEVEL: 'warn',
      });
      let out = '';
      ing.stdout?.on('data', (d) => {
        out += d;
      });
      await until('the ingress', () => out.includes('ready'), 20_000, 100);
    });

    after(async () => {
      await vmm?.manager.destroyAll().catch(() => undefined);
      await vmm?.close({ stopVms: true }).catch(() => undefined);
      for (const p of procs) if (p.pid && p.exitCode === null) process.kill(p.pid, 'SIGKILL');
      for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns]);
      if (tmp) rmSync(tmp, { recursive: true, force: true });
      process.stderr.write(`https e2e timings (ms): ${JSON.stringify(timings)}\n`);
    });

    test('the guest gets a certificate by TLS-ALPN-01 through the ingress; the visitor verifies it against Pebble’s root', async () => {
      const exec = vmm!.manager;
      const directory = `https://${CA_IP}:14000/dir`;
      const caPem = readFileSync(join(tmp, 'api.pem'), 'utf8');
      await assert.rejects(
        configureGuestTls(exec, vm.id, { directory: 'http://plain/dir' }, [NAME]),
        /not an https:\/\/ URL/,
      );
      await assert.rejects(configureGuestTls(exec, vm.id, { directory }, ['Bad Name']), /not DNS names/);
      const t = Date.now();
      assert.equal(await configureGuestTls(exec, vm.id, { directory, caPem }, [NAME, CUSTOM]), 'configured');
      assert.equal(await configureGuestTls(exec, vm.id, { directory, caPem }, [NAME, CUSTOM]), 'unchanged');
      let last = '';
      await until(
        'the guest’s certificate',
        async () => {
          // A starved TCG guest (2 cores, other VMs) may miss an agent deadline: try again.
          const r = await exec.exec(vm.id, '/usr/sbin/form-tls', ['status'], 30_000).catch(() => undefined);
          if (!r) return false;
          last = r.stdout;
          if (/state=failed/.test(r.stdout)) {
            const log = await exec.exec(vm.id, '/bin/sh', ['-c', 'tail -30 /run/form/tls/log'], 30_000);
            throw new Error(`issuance failed: ${r.stdout}\n${log.stdout}`);
          }
          return /state=ready/.test(r.stdout) && /spki_sha256=[0-9a-f]{64}/.test(r.stdout);
        },
        // Under TCG each of the ~10 ACME requests is a TLS handshake the guest's CPU makes slowly.
        300_000,
        1000,
      ).catch(async (err: Error) => {
        const logs = await exec.exec(
          vm.id,
          '/bin/sh',
          ['-c', 'tail -40 /run/form/tls/log; tail -20 /run/form/tls/ualpn.log'],
          30_000,
        );
        throw new Error(
          `${err.message}; last status: ${last}\nguest:\n${logs.stdout}\npebble:\n${ca?.log().slice(-3000)}`,
        );
      });
      timings.issuance = Date.now() - t;
      const body = await until(
        'the app over verified HTTPS',
        () => {
          try {
            return visit(NAME, join(tmp, 'root.pem'));
          } catch {
            return undefined;
          }
        },
        20_000,
        500,
      );
      assert.equal(body, 'hello from the attested guest\n');
      // The verified custom domain: the same certificate covers it, verified the same way.
      const custom = visit(CUSTOM, join(tmp, 'root.pem'));
      assert.equal(custom, 'hello from the attested guest\n');
      // Without Pebble's root the same certificate is not trusted (the chain is really checked).
      assert.throws(() => visit(NAME));
      // The key never left the guest: it is on tmpfs there, 0600, and the node's disk has no copy.
      const key = await exec.exec(
        vm.id,
        '/bin/sh',
        ['-c', 'stat -c "%a %U" /run/form/tls/live/key.pem; findmnt -no FSTYPE -T /run/form/tls'],
        30_000,
      );
      // owner-only (uacme writes it 0400), on tmpfs
      assert.match(key.stdout.trim(), /^[46]00 root\ntmpfs$/);
    });

    test('the served key is the one in the signed attestation report; another key is refused', async () => {
      const svc = new AttestService({ nodeKey, vmm: vmm!.manager, logger: createLogger('silent') });
      const nonce = randomHex(32);
      const signed = await svc.report(vm.id, nonce);
      const verdict = verifyReport(signed, {
        nodePublicKey: nodeKey.publicKey,
        nonce,
        expected: expectedMeasurement(fx.manifest).inputs,
      });
      assert.equal(verdict.ok, true, verdict.reason);
      assert.deepEqual(signed.report.tls?.names, [NAME, CUSTOM]);
      assert.equal(verifyServedCertificate(signed.report, servedCertificate(), CUSTOM).ok, true);
      // What `form attest --https` does, from the visitor's namespace: the chain verifies against Pebble's root.
      const got = JSON.parse(inNs(NS.vis, [process.execPath, SERVED, NAME, PUBLIC, join(tmp, 'root.pem')])) as {
        pem: string;
        authorized: boolean;
        error: string | null;
      };
      assert.equal(got.authorized, true, got.error ?? '');
      const served = servedCertificate();
      assert.equal(spkiSha256(got.pem), spkiSha256(served));
      const v = verifyServedCertificate(signed.report, got.pem, NAME);
      assert.equal(v.ok, true, v.reason);
      assert.equal(v.spkiSha256, spkiSha256(served));
      // The node's own certificate for the name (any other key) is not the guest's.
      const other = verifyServedCertificate(signed.report, readFileSync(join(tmp, 'api.pem')), NAME);
      assert.equal(other.ok, false);
    });

    test('renewal: a new certificate for the same guest key, served without a restart of the app', async () => {
      const before = servedCertificate();
      const status = async () =>
        (await vmm!.manager.exec(vm.id, '/usr/sbin/form-tls', ['status'], 30_000).catch(() => undefined))?.stdout ?? '';
      const issued = await until(
        'the first issuance time',
        async () => /issued_at=(\S+)/.exec(await status())?.[1],
        60_000,
        1000,
      );
      assert.equal(
        (await vmm!.manager.exec(vm.id, '/usr/sbin/form-tls', ['renew'], 30_000)).stdout.trim(),
        'requested',
      );
      await until(
        'a renewed certificate',
        async () => {
          const s = await status();
          return /state=ready/.test(s) && /issued_at=(\S+)/.exec(s)?.[1] !== issued;
        },
        300_000,
        500,
      );
      const after = await until(
        'the renewed certificate served',
        () => {
          const c = servedCertificate();
          return c !== before ? c : undefined;
        },
        20_000,
        500,
      );
      const { X509Certificate } = await import('node:crypto');
      assert.notEqual(new X509Certificate(after).serialNumber, new X509Certificate(before).serialNumber);
      assert.equal(spkiSha256(after), spkiSha256(before), 'uacme keeps the guest key across renewals');
    });
  },
);
