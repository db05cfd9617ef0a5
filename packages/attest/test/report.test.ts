import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateKeyPair, randomHex } from '@formation/identity';
import {
  type AttestationReport,
  expectedMeasurement,
  measurementDigest,
  measurementText,
  providers,
  putSecret,
  type ReplicaResult,
  sealSecret,
  signReport,
  splitCmdline,
  verifyReport,
} from '../src/index.ts';
import { MANIFEST, unsignedReport } from './fixtures/report.ts';

const node = generateKeyPair();
const otherNode = generateKeyPair();
const report = (over: Partial<AttestationReport> = {}, nonce?: string) => unsignedReport(node.publicKey, over, nonce);

const expect = (nonce: string) => ({
  nodePublicKey: node.publicKey,
  nonce,
  expected: expectedMeasurement(MANIFEST).inputs,
  vmName: 'web-abc123',
});

function failed(v: ReturnType<typeof verifyReport>): string[] {
  return v.checks.filter((c) => !c.ok).map((c) => c.name);
}

describe('measurement', () => {
  it('has a defined order and text, and the digest changes with every input', () => {
    const { inputs, digest } = expectedMeasurement(MANIFEST);
    assert.equal(
      measurementText(inputs).split('\n').slice(0, 7).join('|'),
      `formation-measurement-v1|kernel sha256:${'b'.repeat(64)}|initramfs sha256:${'c'.repeat(64)}|` +
        `cmdline sha256:${inputs.cmdline}|disk sha256:${'a'.repeat(64)}|vcpu 1|memMiB 512`,
    );
    for (const k of ['kernel', 'initramfs', 'cmdline', 'disk'] as const) {
      assert.notEqual(measurementDigest({ ...inputs, [k]: 'e'.repeat(64) }), digest, k);
    }
    assert.notEqual(measurementDigest({ ...inputs, vcpu: 2 }), digest);
    assert.notEqual(measurementDigest({ ...inputs, memMiB: 1024 }), digest);
    assert.equal(expectedMeasurement(MANIFEST, { vcpu: 2 }).inputs.vcpu, 2);
  });

  it('splits the command line into the Formpack part and allowed instance params', () => {
    const ok = splitCmdline('console=ttyS0 root=/dev/vda rw vm_ip=1.2.3.4/9 vm_id=vm-1');
    assert.deepEqual(ok, { formpack: 'console=ttyS0 root=/dev/vda rw', params: { vm_ip: '1.2.3.4/9', vm_id: 'vm-1' } });
    const bad = splitCmdline('console=ttyS0 vm_ip=1.2.3.4/9 init=/bin/sh');
    assert.ok('error' in bad && /foreign token "init=\/bin\/sh"/.test(bad.error));
    const dup = splitCmdline('rw vm_id=a vm_id=b');
    assert.ok('error' in dup && /twice/.test(dup.error));
  });
});

describe('verifyReport', () => {
  it('accepts an honest, fresh report from the replica’s node', () => {
    const nonce = randomHex(32);
    const v = verifyReport(signReport(node.privateKey, report({}, nonce)), expect(nonce));
    assert.equal(v.ok, true, v.reason);
    assert.deepEqual(failed(v), []);
  });

  it('refuses a node reporting a measurement for a different image', () => {
    const nonce = randomHex(32);
    const other = expectedMeasurement({
      ...MANIFEST,
      artifacts: { ...MANIFEST.artifacts, disk: { ...MANIFEST.artifacts.disk, sha256: '9'.repeat(64) } },
    });
    const v = verifyReport(
      signReport(node.privateKey, report({ measurement: { ...report().measurement, ...other } }, nonce)),
      expect(nonce),
    );
    assert.equal(v.ok, false);
    assert.deepEqual(failed(v), ['measurement.disk', 'measurement']);
    assert.match(v.reason, /base disk differs: node booted sha256:999999999999…, Formpack has sha256:aaaaaaaaaaaa…/);
  });

  it('refuses a replayed report (old nonce)', () => {
    const old = signReport(node.privateKey, report({}, randomHex(32)));
    const v = verifyReport(old, expect(randomHex(32)));
    assert.equal(v.ok, false);
    assert.deepEqual(failed(v), ['nonce']);
    assert.match(v.reason, /stale or replayed/);
  });

  it('refuses a report signed by another node’s key', () => {
    const nonce = randomHex(32);
    // Signed correctly by the other node (it names itself) …
    const v1 = verifyReport(
      signReport(otherNode.privateKey, report({ node: otherNode.publicKey }, nonce)),
      expect(nonce),
    );
    assert.equal(v1.ok, false);
    assert.deepEqual(failed(v1), ['node']);
    assert.match(v1.reason, /but the replica is on node 0x/);
    // … or claiming to be the replica's node.
    const v2 = verifyReport(signReport(otherNode.privateKey, report({}, nonce)), expect(nonce));
    assert.deepEqual(failed(v2), ['signature']);
  });

  it('refuses a report changed after signing, a stale one and a smuggled kernel parameter', () => {
    const nonce = randomHex(32);
    const s = signReport(node.privateKey, report({}, nonce));
    s.report.measurement.inputs.memMiB = 4096;
    assert.ok(failed(verifyReport(s, expect(nonce))).includes('signature'));
    const stale = signReport(node.privateKey, report({ issuedAt: '2020-01-01T00:00:00Z' }, nonce));
    assert.deepEqual(failed(verifyReport(stale, expect(nonce))), ['time']);
    const r = report({}, nonce);
    r.measurement.cmdline += ' init=/bin/sh';
    const v = verifyReport(signReport(node.privateKey, r), expect(nonce));
    assert.deepEqual(failed(v), ['cmdline.instance']);
    const r2 = report({}, nonce);
    r2.measurement.cmdline = r2.measurement.cmdline.replace('vm_id=vm-0123456789ab', 'vm_id=vm-other');
    assert.match(verifyReport(signReport(node.privateKey, r2), expect(nonce)).reason, /not the attested VM/);
  });

  it('accepts the instance-neutral command line of a snapshot-capable boot, and nothing mixed with it', () => {
    const nonce = randomHex(32);
    const neutral = report({}, nonce);
    neutral.measurement.cmdline = `${MANIFEST.cmdline} vm_wait=identity`;
    const v = verifyReport(signReport(node.privateKey, neutral), expect(nonce));
    assert.deepEqual(failed(v), []);
    assert.match(v.checks.find((c) => c.name === 'cmdline.instance')?.detail ?? '', /instance-neutral/);
    for (const tail of [
      'vm_wait=other',
      'vm_wait=identity vm_id=vm-0123456789ab',
      'vm_wait=identity vm_ip=10.0.2.15/24',
      'vm_wait=identity init=/bin/sh',
    ]) {
      const r = report({}, nonce);
      r.measurement.cmdline = `${MANIFEST.cmdline} ${tail}`;
      assert.deepEqual(failed(verifyReport(signReport(node.privateKey, r), expect(nonce))), ['cmdline.instance'], tail);
    }
  });

  it('refuses garbage without throwing', () => {
    assert.equal(verifyReport({} as never, expect('00').valueOf() as never).ok, false);
  });
});

describe('secrets are released only after verification', () => {
  it('never sends a secret to a replica whose attestation failed or that has no guest key', async () => {
    const dev = generateKeyPair();
    let fetched = 0;
    const orig = globalThis.fetch;
    globalThis.fetch = (async () => {
      fetched++;
      throw new Error('must not be called');
    }) as typeof fetch;
    try {
      const target = { url: 'http://127.0.0.1:9', nodePublicKey: node.publicKey, vm: 'web' };
      const bad: ReplicaResult = {
        target,
        ms: 1,
        report: signReport(node.privateKey, report()),
        verdict: { ok: false, checks: [], reason: 'measurement.disk: base disk differs' },
      };
      await assert.rejects(putSecret(dev, bad, 'DB_PASSWORD', Buffer.from('x')), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'SECRET_REFUSED');
        assert.match(e.message, /attestation failed \(measurement.disk: base disk differs\)/);
        return true;
      });
      const noKey: ReplicaResult = {
        ...bad,
        report: signReport(node.privateKey, report({ guestKey: null, guestKeyError: 'no form-attest' })),
        verdict: { ok: true, checks: [], reason: '' },
      };
      await assert.rejects(
        putSecret(dev, noKey, 'DB_PASSWORD', Buffer.from('x')),
        /has no guest key \(no form-attest\)/,
      );
      assert.equal(fetched, 0);
    } finally {
      globalThis.fetch = orig;
    }
  });

  it('seals with a fresh ephemeral key each time and checks names', () => {
    const a = sealSecret('1'.repeat(64), 'A', Buffer.from('same'));
    const b = sealSecret('1'.repeat(64), 'A', Buffer.from('same'));
    assert.notEqual(a.ct, b.ct);
    assert.notEqual(a.epk, b.epk);
    assert.throws(() => sealSecret('1'.repeat(64), '../etc/passwd', Buffer.from('x')), /use letters/);
  });
});

describe('TEE providers', () => {
  it('software is available and honest; sev-snp and tdx never claim protection', () => {
    for (const exists of [(_p: string) => false, (_p: string) => true]) {
      const [sw, snp, tdx] = providers(exists);
      assert.equal(sw?.available().ok, true);
      assert.match(sw?.trust ?? '', /A malicious node can lie/);
      assert.ok(sw?.doesNotProtect.some((d) => /malicious or compromised node/.test(d)));
      for (const p of [snp, tdx]) {
        assert.equal(p?.available().ok, false);
        if (!exists('')) assert.match(p?.available().reason ?? '', /not available on this host/);
      }
    }
  });
});
