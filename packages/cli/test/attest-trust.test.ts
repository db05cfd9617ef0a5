// A node that lies about the Formpack: with no local build, the expected measurement would come from
// the node's own pack API, so a node that boots something else and serves (and signs) a matching
// manifest would pass attestation and receive secrets. `form secret put` / `form disk unlock` must
// refuse unless the expected measurement is the developer's own (local build or --measurement pin);
// `form attest` says "measurement from the node (unverified)" and exits 1 unless --trust-node-measurement.
// The node here is a fake HTTP server on 127.0.0.1 (state, pack and VMM attest routes); no VM boots.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  type AttestationReport,
  expectedMeasurement,
  measurementDigest,
  REPORT_VERSION,
  signReport,
} from '@formation/attest';
import { developerKeyPath, generateKeyPair, saveKey } from '@formation/identity';
import type { FormpackManifest } from '@formation/interface';
import { runForm } from './run-form.ts';

const dev = generateKeyPair();
const nodeKey = generateKeyPair();
const FORMPACK_ID = 'ab'.repeat(32);
const INSTANCE_ID = '0123456789abcdef0123456789abcdef';
const VM = 'web-012345';
const guestJwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
const guestPub = Buffer.from(guestJwk.x as string, 'base64url').toString('hex');

/** The manifest the node serves: internally consistent, signed over by the node's report. */
const manifest = {
  id: FORMPACK_ID,
  name: 'web',
  owner: dev.address,
  createdAt: new Date().toISOString(),
  formfile: {},
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  cmdline: 'console=ttyS0 root=/dev/vda rw panic=-1',
  init: '/sbin/form-init',
  artifacts: {
    disk: { file: 'disk.qcow2', sha256: '1'.repeat(64), bytes: 1 },
    kernel: { file: 'vmlinuz', sha256: '2'.repeat(64), bytes: 1 },
    initramfs: { file: 'initramfs.img', sha256: '3'.repeat(64), bytes: 1 },
  },
  guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' },
} as unknown as FormpackManifest;
const instance = {
  id: INSTANCE_ID,
  owner: dev.publicKey,
  ownerAddress: dev.address,
  name: 'web',
  formpackId: FORMPACK_ID,
  replicas: 1,
  resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  desired: 'running',
  createdBy: 'c'.repeat(64),
  deleted: false,
  revision: 0,
  revisionHash: null,
  replicaSet: [{ node: nodeKey.publicKey, state: 'running', assigned: true, formnetIp: null, revision: 0 }],
};
const pinned = expectedMeasurement(manifest).digest;

describe('form attest / secret put / disk unlock against a node serving its own measurement', () => {
  let server: Server;
  let work: string;
  let env: Record<string, string>;
  const secretsReceived: string[] = [];
  const reportsServed: string[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'form-cli-attest-trust-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        const json = (status: number, x: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(x));
        };
        const url = req.url ?? '';
        if (req.method === 'GET' && url === '/identity') return json(200, { identity: nodeKey.publicKey });
        if (req.method === 'GET' && url === `/instances/${INSTANCE_ID}`) return json(200, instance);
        if (req.method === 'GET' && url === '/instances') return json(200, [instance]);
        if (req.method === 'GET' && url === '/nodes') {
          return json(200, [{ id: nodeKey.publicKey, address: 'node', endpoint: '127.0.0.1:3001' }]);
        }
        if (req.method === 'GET' && url === `/formpacks/${FORMPACK_ID}`) return json(200, manifest);
        const m = /^\/attest\/vms\/([^/]+)\/(report|secrets|disk)$/.exec(url);
        if (req.method === 'POST' && m?.[2] === 'report') {
          reportsServed.push(m[1] as string);
          const { inputs, digest } = expectedMeasurement(manifest, instance.resources);
          const report: AttestationReport = {
            version: REPORT_VERSION,
            provider: 'software',
            node: nodeKey.publicKey,
            vmId: VM,
            vmName: VM,
            nonce: JSON.parse(body).nonce,
            issuedAt: new Date().toISOString(),
            formpackId: FORMPACK_ID,
            measurement: {
              inputs,
              digest: measurementDigest(inputs) === digest ? digest : '',
              cmdline: `${manifest.cmdline} vm_ip=10.0.2.15/24 vm_gw=10.0.2.2 vm_dns=10.0.2.3 vm_name=${VM} vm_id=${VM}`,
            },
            guestKey: guestPub,
            guestKeyError: null,
            hardware: null,
          };
          return json(200, signReport(nodeKey.privateKey, report));
        }
        if (req.method === 'POST' && m?.[2] === 'secrets') {
          secretsReceived.push(JSON.parse(body).name);
          return json(200, { vm: VM, path: `/run/form/secrets/${JSON.parse(body).name}`, output: 'unlocked /dev/vdb' });
        }
        json(404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${url}` } });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const home = join(work, 'home');
    await saveKey(dev, developerKeyPath(home));
    env = {
      FORM_HOME: home,
      FORM_PACK_CACHE: join(work, 'cache'),
      FORM_STATE_URL: url,
      FORM_PACK_URL: url,
      FORM_VMM_URL: url,
      FORM_LOG_LEVEL: 'silent',
    };
  });
  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    secretsReceived.length = 0;
    reportsServed.length = 0;
    rmSync(join(work, 'home', 'formpacks'), { recursive: true, force: true });
  });

  test('secret put refuses to send a secret when the expected measurement would come from the node', async () => {
    const r = await runForm(['secret', 'put', INSTANCE_ID, 'DB_PASSWORD'], env, { input: 'hunter2' });
    assert.deepEqual(secretsReceived, [], 'no secret reached the node');
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /Cannot send secret DB_PASSWORD to web: .*from the node itself/s);
    assert.match(r.stderr, /--measurement/);
    assert.deepEqual(reportsServed, [], 'refused before attesting');
  });

  test('disk unlock refuses to send the disk key when the expected measurement would come from the node', async () => {
    const r = await runForm(['disk', 'unlock', INSTANCE_ID], env);
    assert.deepEqual(secretsReceived, []);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /Cannot send the disk key to web: .*from the node itself/s);
  });

  test('attest says the measurement is unverified and exits 1, unless --trust-node-measurement', async () => {
    const r = await runForm(['attest', INSTANCE_ID], env);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /measurement from the node \(unverified\): the node could lie/);
    assert.match(r.stdout, /PASS replica/, 'the report itself checks out; only its reference is the node');
    const j = await runForm(['attest', INSTANCE_ID, '--json'], env);
    assert.equal(j.code, 1);
    const out = JSON.parse(j.stdout);
    assert.equal(out.ok, false);
    assert.equal(out.expected.from, 'node manifest');
    assert.equal(out.expected.verified, false);
    const t = await runForm(['attest', INSTANCE_ID, '--trust-node-measurement'], env);
    assert.equal(t.code, 0, t.stdout + t.stderr);
    assert.match(t.stdout, /unverified/);
  });

  test('a measurement pinned with --measurement lets the secret through; a wrong pin refuses it', async () => {
    const ok = await runForm(['secret', 'put', INSTANCE_ID, 'DB_PASSWORD', '--measurement', `sha256:${pinned}`], env, {
      input: 'hunter2',
    });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.deepEqual(secretsReceived, ['DB_PASSWORD']);
    secretsReceived.length = 0;
    const bad = await runForm(['secret', 'put', INSTANCE_ID, 'DB_PASSWORD', '--measurement', 'f'.repeat(64)], env, {
      input: 'hunter2',
    });
    assert.notEqual(bad.code, 0);
    assert.deepEqual(secretsReceived, []);
    assert.match(bad.stderr, /is not the measurement you pinned/);
    const a = await runForm(['attest', INSTANCE_ID, '--measurement', pinned], env);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.match(a.stdout, /from the pinned measurement/);
  });

  test('with a local build of the Formpack the secret is sent (control)', async () => {
    const dir = join(work, 'home', 'formpacks', FORMPACK_ID);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const r = await runForm(['secret', 'put', INSTANCE_ID, 'DB_PASSWORD'], env, { input: 'hunter2' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(secretsReceived, ['DB_PASSWORD']);
  });
});
