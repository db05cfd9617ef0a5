import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, type KeyPair, randomHex, signRequest } from '@formation/identity';
import { requireOrSkip } from '@formation/interface/testing';
import { type ApiServer, apiIdentity, createApiServer, createLogger, setApiIdentity } from '@formation/service';
import {
  type AttestableVm,
  type AttestService,
  expectedMeasurement,
  qcow2Backing,
  registerAttestRoutes,
  type SignedReport,
  sealSecret,
  verifyReport,
} from '../src/index.ts';

/**
 * The node side against real files and a real qcow2 overlay, with the guest helper
 * (packages/guest/files/form-attest) run on this host in place of the guest agent.
 */
const GUEST_SCRIPT = fileURLToPath(new URL('../../guest/files/form-attest', import.meta.url));
const skip = requireOrSkip('attestation service test', { programs: ['openssl', 'qemu-img'] });

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

describe('attestation service (node side, real files, guest helper on the host)', { skip }, () => {
  let tmp: string;
  let app: ApiServer;
  let svc: AttestService;
  const nodeKey = generateKeyPair();
  const alice = generateKeyPair();
  const mallory = generateKeyPair();
  let manifest: Parameters<typeof expectedMeasurement>[0];
  const cmdline = 'console=ttyS0 root=/dev/vda rw panic=-1';
  let vm: AttestableVm;
  let argv: string[];

  before(async () => {
    tmp = mkdtempSync('/tmp/fattest-svc-');
    writeFileSync(`${tmp}/vmlinuz`, 'kernel bytes');
    writeFileSync(`${tmp}/initramfs.img`, 'initramfs bytes');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', `${tmp}/disk.qcow2`, '16M']);
    execFileSync('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-b',
      `${tmp}/disk.qcow2`,
      '-F',
      'qcow2',
      `${tmp}/overlay.qcow2`,
    ]);
    manifest = {
      cmdline,
      resources: { vcpu: 1, memMiB: 256, diskGiB: 1 },
      artifacts: {
        disk: { file: 'disk.qcow2', sha256: sha(`${tmp}/disk.qcow2`), bytes: 0 },
        kernel: { file: 'vmlinuz', sha256: sha(`${tmp}/vmlinuz`), bytes: 0 },
        initramfs: { file: 'initramfs.img', sha256: sha(`${tmp}/initramfs.img`), bytes: 0 },
      },
    };
    vm = {
      id: 'vm-aaaaaaaaaaaa',
      name: 'web-123456',
      owner: alice.address,
      state: 'running',
      pid: 4242,
      source: { kind: 'formpack', id: 'f'.repeat(64) },
    };
    argv = [
      'qemu-system-x86_64',
      '-name',
      `guest=${vm.id},debug-threads=off`,
      '-m',
      '256',
      '-smp',
      '1',
      '-kernel',
      `${tmp}/vmlinuz`,
      '-initrd',
      `${tmp}/initramfs.img`,
      '-append',
      `${cmdline} vm_ip=10.0.2.15/24 vm_gw=10.0.2.2 vm_dns=10.0.2.3 vm_name=${vm.name} vm_id=${vm.id}`,
      '-drive',
      `file=${tmp}/overlay.qcow2,if=none,id=d0,format=qcow2,discard=unmap`,
    ];
    // A stand-in for /usr/sbin/form-disk: records the key it was given; fails when ${tmp}/disk-fail exists.
    writeFileSync(
      `${tmp}/form-disk`,
      `#!/bin/sh\nset -eu\nif [ "$1" = status ]; then printf 'state=locked\\ndevice=/dev/vdb\\nluks=yes\\nmount=/data\\n'; exit 0; fi\n` +
        `od -An -v -tx1 "$2" | tr -d ' \\n' > ${tmp}/disk-got\n` +
        `if [ -e ${tmp}/disk-fail ]; then echo "Cannot unlock the data disk: this key does not open it" >&2; exit 5; fi\n` +
        `echo "unlocked /dev/vdb mounted at /data (formatted now)"\n`,
      { mode: 0o755 },
    );
    const env = {
      ...process.env,
      FORM_ATTEST_DIR: `${tmp}/attest`,
      FORM_SECRETS_DIR: `${tmp}/secrets`,
      FORM_DISK: `${tmp}/form-disk`,
    };
    const vmm = {
      list: () => [vm],
      exec: async (_id: string, path: string, args: string[] = []) => {
        const script = path.endsWith('form-disk') ? `${tmp}/form-disk` : GUEST_SCRIPT;
        const r = spawnSync('sh', [script, ...args], { env, encoding: 'utf8' });
        return { exitcode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
      },
    };
    app = await createApiServer({ name: 'attest-test', logger: createLogger('silent') });
    setApiIdentity(app, nodeKey.publicKey); // as formationd does: the VMM API speaks for the node key
    svc = registerAttestRoutes(app, {
      nodeKey,
      vmm: vmm as never,
      logger: createLogger('silent'),
      readArgv: (pid) => {
        assert.equal(pid, 4242);
        return argv;
      },
    });
    await app.ready();
  });

  after(async () => {
    await app?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  function signed(key: KeyPair, url: string, body: unknown) {
    const text = JSON.stringify(body);
    return {
      method: 'POST' as const,
      url,
      headers: {
        'content-type': 'application/json',
        ...signRequest(key, { method: 'POST', path: url, body: text, audience: apiIdentity(app) }),
      },
      payload: text,
    };
  }

  it('reads the base disk behind a qcow2 overlay', () => {
    assert.equal(qcow2Backing(`${tmp}/overlay.qcow2`), `${tmp}/disk.qcow2`);
    assert.equal(qcow2Backing(`${tmp}/vmlinuz`), null);
  });

  it('signs a report of what QEMU was started with, carrying the guest key, that verifies', async () => {
    const nonce = randomHex(32);
    const r = await app.inject(signed(alice, `/attest/vms/${vm.name}/report`, { nonce }));
    assert.equal(r.statusCode, 200, r.body);
    const s = r.json() as SignedReport;
    const v = verifyReport(s, {
      nodePublicKey: nodeKey.publicKey,
      nonce,
      expected: expectedMeasurement(manifest).inputs,
    });
    assert.equal(v.ok, true, v.reason);
    assert.match(s.report.guestKey ?? '', /^[0-9a-f]{64}$/);
    assert.equal(s.report.guestKey, readFileSync(`${tmp}/attest/x25519.pub`, 'utf8').trim());
  });

  it('refuses a valid signed API call replayed later', async () => {
    const req = signed(alice, `/attest/vms/${vm.name}/report`, { nonce: randomHex(32) });
    assert.equal((await app.inject(req)).statusCode, 200);
    const again = await app.inject(req);
    assert.equal(again.statusCode, 401);
    assert.equal(again.json().error.code, 'AUTH_REPLAYED');
    const unsigned = await app.inject({ ...req, headers: { 'content-type': 'application/json' } });
    assert.equal(unsigned.statusCode, 401);
  });

  it('reports a tampered base disk, so the verifier refuses it', async () => {
    const before = readFileSync(`${tmp}/disk.qcow2`);
    try {
      writeFileSync(`${tmp}/disk.qcow2`, Buffer.concat([before, Buffer.from('evil')]));
      const nonce = randomHex(32);
      const s = await svc.report(vm.id, nonce);
      const v = verifyReport(s, {
        nodePublicKey: nodeKey.publicKey,
        nonce,
        expected: expectedMeasurement(manifest).inputs,
      });
      assert.equal(v.ok, false);
      assert.match(v.reason, /base disk differs/);
    } finally {
      writeFileSync(`${tmp}/disk.qcow2`, before);
    }
  });

  it('delivers a sealed secret that only the guest opens (0600), and refuses wrong keys and non-owners', async () => {
    const s = await svc.report(vm.id, randomHex(32));
    const guestKey = s.report.guestKey as string;
    const sealed = sealSecret(guestKey, 'DB_PASSWORD', Buffer.from('hunter2\n'));
    const ok = await app.inject(
      signed(alice, `/attest/vms/${vm.id}/secrets`, { name: 'DB_PASSWORD', recipient: guestKey, sealed }),
    );
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(readFileSync(`${tmp}/secrets/DB_PASSWORD`, 'utf8'), 'hunter2\n');
    assert.equal(statSync(`${tmp}/secrets/DB_PASSWORD`).mode & 0o777, 0o600);

    // Not the owner.
    const other = await app.inject(
      signed(mallory, `/attest/vms/${vm.id}/secrets`, { name: 'DB_PASSWORD', recipient: guestKey, sealed }),
    );
    assert.equal(other.statusCode, 403);
    assert.match(other.json().error.message, /does not own it/);

    // Sealed to a key the guest does not hold (an unattested guest): the node refuses it.
    const stranger = randomHex(32);
    const wrong = await app.inject(
      signed(alice, `/attest/vms/${vm.id}/secrets`, {
        name: 'X',
        recipient: stranger,
        sealed: sealSecret(stranger, 'X', Buffer.from('x')),
      }),
    );
    assert.equal(wrong.statusCode, 403);
    assert.equal(wrong.json().error.code, 'SECRET_REFUSED');

    // A node that lies about the recipient still cannot make the guest accept a foreign or altered envelope.
    const forged = { ...sealSecret(stranger, 'Y', Buffer.from('y')) };
    const lie = await app.inject(
      signed(alice, `/attest/vms/${vm.id}/secrets`, { name: 'Y', recipient: guestKey, sealed: forged }),
    );
    assert.equal(lie.statusCode, 403);
    assert.match(lie.json().error.message, /The guest refused secret Y: .*authentication failed/);
    const flipped = { ...sealed, ct: Buffer.from('tampered!').toString('base64') };
    const tam = await app.inject(
      signed(alice, `/attest/vms/${vm.id}/secrets`, { name: 'DB_PASSWORD', recipient: guestKey, sealed: flipped }),
    );
    assert.equal(tam.statusCode, 403);
    assert.equal(readFileSync(`${tmp}/secrets/DB_PASSWORD`, 'utf8'), 'hunter2\n');
  });

  it('lists the providers with what they protect', async () => {
    const r = await app.inject({ method: 'GET', url: '/attest/providers' });
    const body = r.json();
    assert.equal(body.active, 'software');
    assert.deepEqual(
      body.providers.map((p: { name: string }) => p.name),
      ['software', 'sev-snp', 'tdx'],
    );
  });

  it('the reserved secret form-disk-key unlocks the data disk, then is removed; a refused key is removed too', async () => {
    const s = await svc.report(vm.id, randomHex(32));
    const guestKey = s.report.guestKey as string;
    const diskKey = Buffer.alloc(32, 7);
    const put = (key: Buffer) =>
      app.inject(
        signed(alice, `/attest/vms/${vm.id}/secrets`, {
          name: 'form-disk-key',
          recipient: guestKey,
          sealed: sealSecret(guestKey, 'form-disk-key', key),
        }),
      );
    const ok = await put(diskKey);
    assert.equal(ok.statusCode, 200, ok.body);
    assert.match(ok.json().output, /unlocked \/dev\/vdb mounted at \/data/);
    assert.equal(readFileSync(`${tmp}/disk-got`, 'utf8'), diskKey.toString('hex'), 'form-disk got the opened key');
    assert.equal(existsSync(`${tmp}/secrets/form-disk-key`), false, 'the key file is consumed');

    writeFileSync(`${tmp}/disk-fail`, '');
    const bad = await put(Buffer.alloc(32, 9));
    assert.equal(bad.statusCode, 403);
    assert.match(bad.json().error.message, /The guest refused the disk key: Cannot unlock the data disk: this key/);
    assert.equal(existsSync(`${tmp}/secrets/form-disk-key`), false, 'a refused key is not left behind');
    rmSync(`${tmp}/disk-fail`);

    const st = await app.inject(signed(alice, `/attest/vms/${vm.id}/disk`, {}));
    assert.equal(st.statusCode, 200, st.body);
    assert.deepEqual(st.json(), { state: 'locked', device: '/dev/vdb', luks: 'yes', mount: '/data' });
  });
});
