// HEALTHCHECK in the Formpack: the id covers it, and the manifest carries it (the builder writes
// `formfile: redactSpec(spec)`, which keeps `healthcheck`) in a form the manifest schema accepts, while a
// peer's manifest with a health check the parser would refuse is refused too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFormfile } from '@formation/formfile';
import { FormError, type FormfileSpec, type FormpackManifest } from '@formation/interface';
import { parseFormpackManifest } from '@formation/interface/formpack-schema';
import { redactSpec } from '../src/builder.ts';
import { formpackId } from '../src/context.ts';
import { normalizeSpec } from '../src/normalize.ts';

const spec = (hc: string): FormfileSpec => {
  const r = parseFormfile(`NAME app\nEXPOSE 8080\n${hc}\n`);
  assert.deepEqual(r.errors, []);
  return r.spec!;
};
const CTX = '0'.repeat(64);
const id = (s: FormfileSpec) => formpackId(normalizeSpec(s), CTX);

test('the Formpack id changes when the health check changes, and not for NONE', () => {
  const ids = [
    '',
    'HEALTHCHECK HTTP 8080 /health',
    'HEALTHCHECK HTTP 8080 /ready',
    'HEALTHCHECK --interval=5s HTTP 8080 /health',
    'HEALTHCHECK TCP 8080',
    'HEALTHCHECK CMD true',
  ].map((hc) => id(spec(hc)));
  assert.equal(new Set(ids).size, ids.length, 'each health check gives its own id');
  assert.equal(id(spec('HEALTHCHECK NONE')), ids[0], 'NONE is the same Formpack as no HEALTHCHECK');
});

function manifest(formfile: FormfileSpec): FormpackManifest {
  const art = (file: string) => ({ file, sha256: 'a'.repeat(64), bytes: 1 });
  return {
    id: 'b'.repeat(64),
    name: formfile.name,
    owner: `0x${'c'.repeat(40)}`,
    createdAt: '2026-12-03T19:00:00.000Z',
    formfile: redactSpec(formfile),
    resources: { vcpu: formfile.vcpu, memMiB: formfile.memMiB, diskGiB: formfile.diskGiB },
    cmdline: 'console=ttyS0',
    init: '/sbin/form-init',
    artifacts: { disk: art('disk.qcow2'), kernel: art('vmlinuz'), initramfs: art('initramfs.img') },
    guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' },
  };
}

test('the manifest carries the health check, and the schema accepts every kind the parser makes', () => {
  for (const hc of [
    'HEALTHCHECK --retries=1 --start-period=0s HTTP 8080 /a%20b?x=1',
    'HEALTHCHECK TCP 1',
    'HEALTHCHECK --interval=1h --timeout=5m CMD ["pg_isready", "-q"]',
    'HEALTHCHECK CMD exit 0',
  ]) {
    const s = spec(hc);
    const m = parseFormpackManifest(JSON.parse(JSON.stringify(manifest(s))));
    assert.deepEqual(m.formfile.healthcheck, s.healthcheck, hc);
  }
  assert.equal(parseFormpackManifest(manifest(spec(''))).formfile.healthcheck, undefined);
});

test("a peer's manifest with a health check the parser would refuse is refused (PACK_BAD_MANIFEST)", () => {
  const good = manifest(spec('HEALTHCHECK HTTP 8080 /health'));
  const hc = good.formfile.healthcheck!;
  const bad: Array<[string, unknown]> = [
    [
      'CR LF in the path (request smuggling into the probe)',
      { ...hc, test: { type: 'http', port: 8080, path: '/a\r\nHost: x' } },
    ],
    ['a path without /', { ...hc, test: { type: 'http', port: 8080, path: 'health' } }],
    ['port 0', { ...hc, test: { type: 'tcp', port: 0 } }],
    ['an unknown kind', { ...hc, test: { type: 'udp', port: 53 } }],
    ['an extra field', { ...hc, test: { type: 'tcp', port: 1, host: '169.254.169.254' } }],
    ['interval below 1 s', { ...hc, intervalMs: 10 }],
    ['zero retries', { ...hc, retries: 0 }],
    ['an empty exec form', { ...hc, test: { type: 'cmd', command: { form: 'exec', argv: [] } } }],
  ];
  for (const [what, healthcheck] of bad) {
    assert.throws(
      () => parseFormpackManifest({ ...good, formfile: { ...good.formfile, healthcheck } }, 'manifest from a peer'),
      (e: unknown) => e instanceof FormError && e.code === 'PACK_BAD_MANIFEST' && /healthcheck/.test(e.message),
      what,
    );
  }
});
