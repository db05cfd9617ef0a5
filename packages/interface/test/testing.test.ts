import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  namespacesLeft,
  requireOrSkip,
  runProgram,
  selfSignedCert,
  sshArgv,
  startWithFirstLine,
  stopChildren,
  tempDevnet,
  until,
  writePebbleConfig,
} from '../src/testing.ts';

function withRequire<T>(value: string | undefined, fn: () => T): T {
  const before = process.env.FORM_REQUIRE_INTEGRATION;
  if (value === undefined) delete process.env.FORM_REQUIRE_INTEGRATION;
  else process.env.FORM_REQUIRE_INTEGRATION = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env.FORM_REQUIRE_INTEGRATION;
    else process.env.FORM_REQUIRE_INTEGRATION = before;
  }
}

test('requireOrSkip: false when everything is there, the reason when not, a failure under FORM_REQUIRE_INTEGRATION=1', () => {
  withRequire(undefined, () => {
    assert.equal(requireOrSkip('t', { programs: ['sh'], files: ['/'] }), false);
    assert.equal(requireOrSkip('t', { programs: ['no-such-program-x1'] }), 'missing no-such-program-x1');
    assert.equal(
      requireOrSkip('t', { files: ['/no/such/file', { path: '/no/such/chromium', name: 'chromium (apt)' }] }),
      'missing /no/such/file, chromium (apt)',
    );
    assert.equal(requireOrSkip('t', { check: () => 'no guest kernel' }), 'no guest kernel');
    assert.equal(requireOrSkip('t', { check: () => false }), false);
  });
  withRequire('1', () => {
    assert.equal(requireOrSkip('t', { programs: ['sh'], check: () => undefined }), false);
    assert.throws(() => requireOrSkip('the z test', { check: () => 'no guest kernel' }), /the z test no guest kernel/);
    assert.throws(
      () => requireOrSkip('the x test', { files: ['/no/such/file'] }),
      /the x test missing \/no\/such\/file/,
    );
    assert.throws(() => requireOrSkip('the y test', { programs: ['no-such-program-x1'] }), /the y test missing/);
  });
});

test('until returns the first truthy value, retries a throwing check and times out naming what and the last error', async () => {
  let n = 0;
  assert.equal(await until('three', () => (++n >= 3 ? n : false), 1000, 1), 3);
  let m = 0;
  const v = await until(
    'async',
    async () => {
      if (++m < 2) throw new Error('not yet');
      return 'ok';
    },
    1000,
    1,
  );
  assert.equal(v, 'ok');
  await assert.rejects(
    until(
      'never',
      () => {
        throw new Error('still down');
      },
      30,
      5,
    ),
    /timed out after 30 ms waiting for never: still down/,
  );
});

test('sshArgv: a password login through sshpass that never prompts or records host keys; login and port can change', () => {
  const argv = sshArgv('10.129.1.2', 'cat ~/note.txt');
  assert.deepEqual(argv.slice(0, 4), ['sshpass', '-p', 'bigdog123', 'ssh']);
  assert.deepEqual(argv.slice(-2), ['bigdog@10.129.1.2', 'cat ~/note.txt']);
  for (const o of ['StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'LogLevel=ERROR', 'ConnectTimeout=10']) {
    assert.equal(argv[argv.indexOf(o) - 1], '-o', o);
  }
  assert.equal(argv.includes('-p', 3), false, 'no port option by default');
  const other = sshArgv('vm.example', 'true', { user: 'root', password: 'pw', port: 2222, connectTimeoutS: 3 });
  assert.deepEqual(other.slice(0, 6), ['sshpass', '-p', 'pw', 'ssh', '-p', '2222']);
  assert.ok(other.includes('ConnectTimeout=3'));
  assert.deepEqual(other.slice(-2), ['root@vm.example', 'true']);
  assert.equal(other.includes('PubkeyAuthentication=no'), false, 'keys may be offered by default');
  const pw = sshArgv('vm.example', 'true', { passwordOnly: true });
  for (const o of ['PreferredAuthentications=password', 'PubkeyAuthentication=no']) {
    assert.equal(pw[pw.indexOf(o) - 1], '-o', o);
  }
  assert.deepEqual(pw.slice(-2), ['bigdog@vm.example', 'true']);
  // A key login: no sshpass and no password anywhere, the key named, never a prompt.
  const key = sshArgv('vm.example', 'id -un', { user: 'keyonly', keyFile: '/tmp/k', port: 2200 });
  assert.deepEqual(key.slice(0, 5), ['ssh', '-i', '/tmp/k', '-o', 'BatchMode=yes']);
  assert.equal(key.includes('sshpass') || key.includes('bigdog123'), false);
  assert.deepEqual(key.slice(5, 7), ['-p', '2200']);
  assert.ok(key.includes('StrictHostKeyChecking=no'));
  assert.deepEqual(key.slice(-2), ['keyonly@vm.example', 'id -un']);
});

test('runProgram: exit code, both outputs, stdin, env and cwd; a missing program rejects', async () => {
  const r = await runProgram(
    ['sh', '-c', 'read x; echo "out:$x:$FOO:$NO_COLOR:$(pwd)"; echo err >&2; exit 3'],
    { FOO: 'bar' },
    { cwd: '/', input: 'typed\n' },
  );
  assert.deepEqual(r, { code: 3, stdout: 'out:typed:bar:1:/\n', stderr: 'err\n' });
  const quiet = await runProgram(['true']);
  assert.deepEqual(quiet, { code: 0, stdout: '', stderr: '' });
  await assert.rejects(runProgram(['/no/such/program-x1']), /ENOENT/);
});

test(
  'selfSignedCert / writePebbleConfig: a P-256 certificate with the CN and SAN asked; Pebble listens on the CA address with it',
  { skip: requireOrSkip('certificate helpers', { programs: ['openssl'] }) },
  (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'form-testing-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const text = (pem: string) =>
      execFileSync('openssl', ['x509', '-in', pem, '-noout', '-text'], { encoding: 'utf8' });
    const site = selfSignedCert(dir, 'site', 'hello.test', 'DNS:hello.test');
    assert.deepEqual(site, { keyFile: join(dir, 'site.key'), certFile: join(dir, 'site.pem') });
    const siteText = text(site.certFile);
    assert.match(siteText, /Subject: CN\s*=\s*hello\.test/);
    assert.match(siteText, /DNS:hello\.test/);
    assert.match(siteText, /prime256v1|P-256/);
    assert.match(readFileSync(site.keyFile, 'utf8'), /BEGIN PRIVATE KEY/);
    assert.doesNotMatch(text(selfSignedCert(dir, 'bare', 'bare').certFile), /Subject Alternative Name/);

    const config = writePebbleConfig(dir, '203.0.113.2');
    assert.equal(config, join(dir, 'pebble.json'));
    assert.deepEqual(JSON.parse(readFileSync(config, 'utf8')), {
      pebble: {
        listenAddress: '203.0.113.2:14000',
        managementListenAddress: '203.0.113.2:15000',
        certificate: join(dir, 'api.pem'),
        privateKey: join(dir, 'api.key'),
        httpPort: 80,
        tlsPort: 443,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    });
    const api = text(join(dir, 'api.pem'));
    assert.match(api, /Subject: CN\s*=\s*pebble/);
    assert.match(api, /IP Address:203\.0\.113\.2/);
  },
);

test('startWithFirstLine resolves at the first line and passes every line on; a program that ends first rejects with why', async () => {
  const children: ChildProcess[] = [];
  const lines: string[] = [];
  let err = '';
  const child = await startWithFirstLine(
    [
      process.execPath,
      '-e',
      'console.log("ready"); setTimeout(() => console.log("later"), 50); setInterval(() => {}, 1000)',
    ],
    (l) => lines.push(l),
    { children },
  );
  assert.deepEqual(children, [child]);
  assert.deepEqual(lines, ['ready']);
  await until('the second line', () => lines.length === 2);
  assert.deepEqual(lines, ['ready', 'later']);
  await assert.rejects(
    startWithFirstLine([process.execPath, '-e', 'console.error("no config"); process.exit(3)'], () => {}, {
      children,
      label: 'fixture.ts',
      onStderr: (d) => {
        err += d;
      },
      why: () => err,
    }),
    /^Error: fixture\.ts exited 3: no config/,
  );
  await stopChildren(children);
  assert.equal(child.signalCode, 'SIGTERM');
});

test('stopChildren: SIGTERM, then SIGKILL for a child that ignores it; ended ones are left alone', async () => {
  const children: ChildProcess[] = [];
  const stubborn = await startWithFirstLine(
    [process.execPath, '-e', 'process.on("SIGTERM", () => {}); console.log("up"); setInterval(() => {}, 1000)'],
    () => {},
    { children },
  );
  const done = await startWithFirstLine([process.execPath, '-e', 'console.log("bye")'], () => {}, { children }).then(
    async (c) => {
      await until('it to end', () => c.exitCode !== null);
      return c;
    },
  );
  const t0 = Date.now();
  await stopChildren(children, 300);
  await until('the stubborn child to end', () => stubborn.signalCode !== null);
  assert.equal(stubborn.signalCode, 'SIGKILL');
  assert.ok(Date.now() - t0 >= 250, 'it had its grace time first');
  assert.equal(done.exitCode, 0);
});

test('tempDevnet: up makes a fresh temp dir for start; down stops it and removes the dir, also when stop fails', async () => {
  const never = tempDevnet(
    'form-kit-devnet-',
    async () => 'up',
    async () => 'down',
  );
  assert.equal(never.dir, '');
  assert.equal(await never.down(), undefined, 'nothing to bring down before up()');

  const seen: string[] = [];
  const devnet = tempDevnet(
    'form-kit-devnet-',
    async (dir) => {
      seen.push(`start ${dir}`);
      writeFileSync(join(dir, 'state.json'), '{}');
      return { dir };
    },
    async (dir) => {
      seen.push(`stop ${dir}`);
      return { namespaces: ['a', 'b'] };
    },
  );
  const s = await devnet.up();
  assert.equal(s.dir, devnet.dir);
  assert.ok(devnet.dir.startsWith(join(tmpdir(), 'form-kit-devnet-')));
  assert.ok(existsSync(join(devnet.dir, 'state.json')));
  assert.deepEqual(await devnet.down(), { namespaces: ['a', 'b'] });
  assert.deepEqual(seen, [`start ${devnet.dir}`, `stop ${devnet.dir}`]);
  assert.equal(existsSync(devnet.dir), false, 'the directory is gone');

  const failing = tempDevnet(
    'form-kit-devnet-',
    async () => undefined,
    async () => {
      throw new Error('half up');
    },
  );
  await failing.up();
  assert.equal(await failing.down(), undefined);
  assert.equal(existsSync(failing.dir), false, 'removed although the stop failed');
});

test(
  'namespacesLeft: by prefix or by list; namespaces of others are not counted',
  { skip: requireOrSkip('namespacesLeft test', { root: true, programs: ['ip'] }) },
  async () => {
    const ns = `fh6kit${process.pid % 10000}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      assert.deepEqual(await namespacesLeft(ns), [ns]);
      assert.deepEqual(await namespacesLeft([ns, `${ns}x`]), [ns], 'by list');
      assert.deepEqual(await namespacesLeft([`${ns}x`]), []);
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
    assert.deepEqual(await namespacesLeft(ns), [], 'gone once deleted');
  },
);
