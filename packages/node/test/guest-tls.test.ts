// The node telling guests their HTTPS names (issue 19): which VMs, which names (the ingress's hosts,
// verified custom domains included, pending ones not), told once per change, images without HTTPS left
// alone. The agent is a recorded fake here (its real counterpart, the VMM's qemu-ga exec, runs in
// packages/node/test/attest-https-e2e.test.ts against a real guest).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { acmeSettingsFromEnv, guestTlsTargets, startGuestTls } from '../src/guest-tls.ts';

type Views = Parameters<typeof guestTlsTargets>[0];
const instance = (id: string, name: string, expose: number[]) => ({
  id,
  name,
  deleted: false,
  desired: 'running',
  overQuota: false,
  formpack: { name, sha256s: {}, size: 1, publishedBy: 'p', service: { expose } },
  replicaSet: [
    {
      node: 'n1',
      claimedBy: 'n1',
      assigned: true,
      state: 'running',
      formnetIp: '10.129.1.2',
      revision: 0,
      reason: null,
      ts: 1,
    },
  ],
});
const views = (domains: Array<{ name: string; instanceId: string; state: string }>) =>
  ({
    instances: [instance('aaaaaa01', 'shop', [443, 8080]), instance('bbbbbb02', 'plain', [8080])],
    dns: [
      { name: 'shop.dev.formation.local', source: 'instance', instanceId: 'aaaaaa01', addresses: [], owner: 'x' },
      { name: 'plain.dev.formation.local', source: 'instance', instanceId: 'bbbbbb02', addresses: [], owner: 'x' },
    ],
    domains,
  }) as unknown as Views;
const vms = [
  { id: 'vm-shop', name: 'shop-aaaaaa', state: 'running' },
  { id: 'vm-plain', name: 'plain-bbbbbb', state: 'running' },
];
const acme = { directory: 'https://acme.test/dir' };

test('targets: instances exposing 443 with a running local VM, named like the ingress routes them', () => {
  const t = guestTlsTargets(
    views([
      { name: 'shop.example.com', instanceId: 'aaaaaa01', state: 'verified' },
      { name: 'pending.example.com', instanceId: 'aaaaaa01', state: 'pending' },
    ]),
    'dev.formation.local',
    vms,
  );
  assert.deepEqual(t, [
    { vmId: 'vm-shop', instanceId: 'aaaaaa01', names: ['shop.dev.formation.local', 'shop.example.com'] },
  ]);
  assert.deepEqual(guestTlsTargets(views([]), 'dev.formation.local', [{ ...vms[0]!, state: 'stopped' }]), []);
});

test('told once per change of names; a verified domain re-tells; an image without HTTPS is not asked again', async () => {
  let current = views([]);
  const calls: string[][] = [];
  let answer = { exitcode: 0, stdout: 'configured\n', stderr: '' };
  const g = startGuestTls({
    store: { views: () => current as never, onAccepted: () => () => undefined },
    vmm: {
      list: () => vms,
      exec: async (id, path, args) => {
        calls.push([id, path, ...args]);
        return answer;
      },
    },
    domain: 'dev.formation.local',
    acme,
    logger: createLogger('silent'),
    intervalMs: 60_000,
  });
  try {
    await g.sync();
    await g.sync();
    assert.deepEqual(calls, [
      ['vm-shop', '/usr/sbin/form-tls', 'configure', acme.directory, '-', 'shop.dev.formation.local'],
    ]);
    current = views([{ name: 'shop.example.com', instanceId: 'aaaaaa01', state: 'verified' }]);
    await g.sync();
    assert.deepEqual(calls.at(-1)?.slice(5), ['shop.dev.formation.local', 'shop.example.com']);
    assert.deepEqual(g.status().get('vm-shop'), { names: ['shop.dev.formation.local', 'shop.example.com'] });
    // An image without `HTTPS` in its Formfile answers 3: remembered, not asked again.
    answer = { exitcode: 3, stdout: '', stderr: 'form-tls: this image does not serve HTTPS' };
    current = views([]);
    await g.sync();
    const n = calls.length;
    current = views([{ name: 'other.example.com', instanceId: 'aaaaaa01', state: 'verified' }]);
    await g.sync();
    assert.equal(calls.length, n);
    assert.match(String((g.status().get('vm-shop') as { error: string }).error), /does not serve HTTPS/);
  } finally {
    g.close();
  }
});

test('ACME settings from the environment: off when unset; a non-https URL or a bad CA file is CONFIG_INVALID', (t) => {
  assert.equal(acmeSettingsFromEnv({}), undefined);
  assert.deepEqual(acmeSettingsFromEnv({ FORM_ACME_DIRECTORY: 'https://acme.test/dir' }), {
    directory: 'https://acme.test/dir',
  });
  const bad = (env: NodeJS.ProcessEnv, re: RegExp) =>
    assert.throws(
      () => acmeSettingsFromEnv(env),
      (e: FormError) => e.code === 'CONFIG_INVALID' && re.test(e.message),
    );
  bad({ FORM_ACME_DIRECTORY: 'http://acme.test/dir' }, /not an https:\/\/ URL/);
  bad({ FORM_ACME_DIRECTORY: 'https://acme.test/dir; rm -rf /' }, /not an https:\/\/ URL/);
  bad({ FORM_ACME_DIRECTORY: 'https://acme.test/dir', FORM_ACME_CA_FILE: '/nonexistent/ca.pem' }, /Cannot read/);
  const dir = mkdtempSync(join(tmpdir(), 'fdh-acme-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
  bad(
    { FORM_ACME_DIRECTORY: 'https://acme.test/dir', FORM_ACME_CA_FILE: join(dir, 'junk.pem') },
    /not a PEM certificate/,
  );
  writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n');
  assert.match(
    acmeSettingsFromEnv({ FORM_ACME_DIRECTORY: 'https://acme.test/dir', FORM_ACME_CA_FILE: join(dir, 'ca.pem') })
      ?.caPem ?? '',
    /BEGIN/,
  );
});
