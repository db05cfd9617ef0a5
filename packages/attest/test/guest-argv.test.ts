// No key material on argv inside the guest: /proc/<pid>/cmdline is world-readable, so any process in the
// guest (the tenant's own entrypoint, running as any user) could read a key passed to openssl as an
// argument while `form-attest secret-put` runs. The guest helper is run here on the host with every
// program it may start replaced by a shim on PATH that logs its argv; the test derives the shared
// secret and every key from the guest's private key and checks that none of them (nor the plaintext)
// appears in any argv.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, pbkdf2Sync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { requireOrSkip } from '@formation/interface/testing';
import { SECRET_INFO, sealSecret } from '../src/index.ts';

const GUEST_SCRIPT = fileURLToPath(new URL('../../guest/files/form-attest', import.meta.url));
/** Everything form-attest (and form-disk's stand-in) might exec, plus builtins in case a shell lacks them. */
const PROGRAMS = [
  'openssl',
  'od',
  'tr',
  'cut',
  'cat',
  'mktemp',
  'mkdir',
  'chmod',
  'mv',
  'rm',
  'tail',
  'head',
  'dd',
  'printf',
  'echo',
  'test',
  '[',
  'xxd',
  'base64',
  'sed',
  'awk',
  'wc',
];
const skip = requireOrSkip('form-attest argv test', { programs: ['openssl'] });

describe('form-attest secret-put puts no key material on any argv', { skip }, () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;
  const log = () => readFileSync(`${tmp}/argv.log`, 'utf8');
  const files = () =>
    (readdirSync(tmp, { recursive: true }) as string[])
      .map((f) => `${tmp}/${f}`)
      .filter((f) => statSync(f).isFile() && !f.startsWith(`${tmp}/shims`) && !f.endsWith('argv.log'))
      .sort();

  before(() => {
    tmp = mkdtempSync('/tmp/fattest-argv-');
    mkdirSync(`${tmp}/shims`);
    writeFileSync(`${tmp}/argv.log`, '');
    for (const p of PROGRAMS) {
      const real = spawnSync('sh', ['-c', `command -v ${p} || true`], {
        encoding: 'utf8',
        env: { PATH: '/usr/local/bin:/usr/bin:/bin' },
      }).stdout.trim();
      if (!real.startsWith('/')) continue; // absent, or only a builtin here
      writeFileSync(`${tmp}/shims/${p}`, `#!/bin/sh\necho "$0 $*" >> '${tmp}/argv.log'\nexec '${real}' "$@"\n`);
      chmodSync(`${tmp}/shims/${p}`, 0o755);
    }
    env = {
      PATH: `${tmp}/shims:/usr/local/bin:/usr/bin:/bin`,
      FORM_ATTEST_DIR: `${tmp}/attest`,
      FORM_SECRETS_DIR: `${tmp}/secrets`,
    };
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const guest = (args: string[]) => spawnSync('sh', [GUEST_SCRIPT, ...args], { env, encoding: 'utf8' });

  it('opens the secret, and no argv carries the shared secret, a derived key or the plaintext', () => {
    const pub = guest(['pubkey']);
    assert.equal(pub.status, 0, pub.stderr);
    const guestKey = pub.stdout.trim();
    const plaintext = 'correct horse battery staple';
    const s = sealSecret(guestKey, 'DB_PASSWORD', Buffer.from(plaintext));
    writeFileSync(`${tmp}/argv.log`, '');
    const filesBefore = files();
    const r = guest(['secret-put', 'DB_PASSWORD', s.epk, s.iv, s.ct, s.mac]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(`${tmp}/secrets/DB_PASSWORD`, 'utf8'), plaintext, 'the guest opened it');

    // Everything secret in that exchange, derived independently of the script.
    const shared = diffieHellman({
      privateKey: createPrivateKey(readFileSync(`${tmp}/attest/x25519.pem`)),
      publicKey: createPublicKey({ key: Buffer.from(s.epk, 'base64'), format: 'der', type: 'spki' }),
    });
    const prk = createHmac('sha256', Buffer.alloc(32)).update(shared).digest();
    const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.alloc(0), SECRET_INFO, 64));
    const ek = okm.subarray(0, 32).toString('hex');
    const mk = okm.subarray(32).toString('hex');
    const aesKey = pbkdf2Sync(ek, Buffer.alloc(0), 1, 32, 'sha256').toString('hex');
    const secrets: Record<string, string> = {
      'shared secret': shared.toString('hex'),
      'HKDF PRK': prk.toString('hex'),
      'HKDF encryption key': ek,
      'HMAC key': mk,
      'AES key': aesKey,
      plaintext,
      'plaintext (hex)': Buffer.from(plaintext).toString('hex'),
      'guest private key': createPrivateKey(readFileSync(`${tmp}/attest/x25519.pem`))
        .export({ format: 'der', type: 'pkcs8' })
        .subarray(-32)
        .toString('hex'),
    };
    const argv = log().toLowerCase();
    assert.match(argv, /openssl/, 'the shims saw the programs the script ran');
    for (const [what, value] of Object.entries(secrets)) {
      assert.equal(argv.includes(value.toLowerCase()), false, `${what} appears on an argv:\n${argv}`);
    }
    // And it left no key file behind: only the opened secret is new.
    assert.deepEqual(
      files().filter((f) => !filesBefore.includes(f)),
      [`${tmp}/secrets/DB_PASSWORD`],
    );
  });

  it('still refuses a tampered envelope (the MAC is checked before anything is decrypted)', () => {
    const guestKey = guest(['pubkey']).stdout.trim();
    const s = sealSecret(guestKey, 'OTHER', Buffer.from('x'));
    const r = guest(['secret-put', 'OTHER', s.epk, s.iv, Buffer.from('evil').toString('base64'), s.mac]);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /authentication failed/);
  });
});
