// form-tls's host-facing commands in a plain shell (no guest, no uacme): what the node may hand it
// through the agent is checked before anything is written, and an image without HTTPS says so (exit 3).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { selfSignedCert } from '@formation/interface/testing';
import { GUEST_CONTRACT, guestFiles } from '../src/index.ts';

const script = guestFiles().find((f) => f.target === GUEST_CONTRACT.tls)!.source;
const dir = mkdtempSync(join(tmpdir(), 'fdh-form-tls-'));
const portFile = join(dir, 'https');
const env = { ...process.env, FORM_TLS_DIR: join(dir, 'tls'), FORM_TLS_PORT_FILE: portFile };
const run = (...args: string[]) => spawnSync('sh', [script, ...args], { env, encoding: 'utf8' });
after(() => rmSync(dir, { recursive: true, force: true }));

describe('form-tls configure / status / renew (plain shell)', () => {
  test('an image without HTTPS: exit 3 with the reason, nothing written', () => {
    const r = run('configure', 'https://acme.test/dir', '-', 'hello.example.net');
    assert.equal(r.status, 3);
    assert.match(r.stderr, /does not serve HTTPS/);
  });

  test('bad input is refused before anything is written (exit 2)', () => {
    writeFileSync(portFile, '8080\n');
    const bad: Array<[string[], RegExp]> = [
      [['https://acme.test/dir', '-'], /usage/],
      [['http://acme.test/dir', '-', 'a.example'], /must be an https:\/\/ URL/],
      [['https://acme.test/dir;reboot', '-', 'a.example'], /characters it cannot have/],
      [['https://acme.test/dir', '-', 'Upper.example'], /not a lower-case DNS name/],
      // exploit: a name that starts with '-' reached uacme's argv as an option
      [['https://acme.test/dir', '-', '-f'], /not a lower-case DNS name/],
      [['https://acme.test/dir', '-', 'a.example', '-rf.example'], /not a lower-case DNS name/],
      [['https://acme.test/dir', '-', 'a-.example'], /not a lower-case DNS name/],
      [['https://acme.test/dir', '-', 'localhost'], /one label/],
      [['https://acme.test/dir', '-', 'a..example'], /not a lower-case DNS name/],
      [['https://acme.test/dir', '-', 'x.example', '$(reboot)'], /not a lower-case DNS name/],
      [['https://acme.test/dir', 'not base64!', 'a.example'], /not base64|not a PEM/],
      [['https://acme.test/dir', Buffer.from('hello').toString('base64'), 'a.example'], /not a PEM certificate/],
    ];
    for (const [args, re] of bad) {
      const r = run('configure', ...args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    assert.equal(spawnSync('test', ['-e', join(dir, 'tls', 'config')]).status, 1, 'no config written');
  });

  test('configure, then the same again is unchanged; a CA is kept as PEM; status before a certificate; renew', () => {
    selfSignedCert(dir, 'ca', 'acme ca');
    const ca = readFileSync(join(dir, 'ca.pem'));
    const args = ['configure', 'https://acme.test/dir', ca.toString('base64'), 'hello.example.net', 'shop.example.com'];
    assert.equal(run(...args).stdout.trim(), 'configured');
    assert.equal(run(...args).stdout.trim(), 'unchanged');
    assert.deepEqual(readFileSync(join(dir, 'tls', 'acme-ca.pem')), ca);
    assert.equal(
      readFileSync(join(dir, 'tls', 'config'), 'utf8'),
      'directory=https://acme.test/dir\nnames=hello.example.net shop.example.com\n',
    );
    const st = run('status');
    assert.equal(st.status, 0);
    assert.match(st.stdout, /^state=starting\nnames=hello\.example\.net shop\.example\.com\nspki_sha256=\nerror=\n$/);
    assert.equal(run('renew').stdout.trim(), 'requested');
    // uacme's hook declines what cannot pass the ingress: http-01 and dns-01.
    assert.equal(run('begin', 'http-01', 'hello.example.net', 'tok', 'auth').status, 1);
    assert.equal(run('begin', 'dns-01', 'hello.example.net', 'tok', 'auth').status, 1);
  });
});
