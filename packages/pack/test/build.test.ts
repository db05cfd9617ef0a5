import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormError } from '@formation/interface';
import { type BuildEvent, Builder } from '../src/index.ts';
import { writeTree } from './context-fixtures.ts';
import { buildPrereqMissing, CACHE_DIR } from './env.ts';
import { makeSpec, makeUser } from './spec.ts';

const skip = buildPrereqMissing();
const SECRET = 'S3cret-plain-xyz';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghij test@pack';

function debugfsCat(raw: string, path: string): string {
  const r = spawnSync('debugfs', ['-R', `cat ${path}`, raw], { encoding: 'utf8' });
  return r.stdout;
}

function fileContains(path: string, needle: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const n = Buffer.from(needle);
    let tail = Buffer.alloc(0);
    let found = false;
    createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })
      .on('data', (c) => {
        const buf = Buffer.concat([tail, c as Buffer]);
        if (buf.includes(n)) found = true;
        tail = buf.subarray(Math.max(0, buf.length - n.length));
      })
      .on('error', reject)
      .on('end', () => resolve(found));
  });
}

function isFormError(code: string, re?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof FormError, `expected FormError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  };
}

/** Formpack directories and leftovers in a data dir. */
function packDirs(dataDir: string): string[] {
  const d = join(dataDir, 'formpacks');
  return existsSync(d) ? readdirSync(d).filter((n) => n !== '.locks') : [];
}

describe('Formpack builder (real builds)', { skip }, () => {
  let work: string;
  let builder: Builder;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'form-pack-test-'));
    builder = new Builder({ dataDir: join(work, 'data'), cacheDir: CACHE_DIR });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  const ctxDir = (name: string, files: Record<string, string>) => writeTree(join(work, name), files);

  test('builds users, whole-dir copy, ENV, RUN, WORKDIR, entrypoint; passwords only as hashes', async () => {
    const dir = ctxDir('app', {
      'a.txt': 'file a\n',
      'sub/b.txt': 'file b\n',
      Formfile: `NAME packtest\nUSER username:alice passwd:${SECRET}\n`,
    });
    const spec = makeSpec({
      name: 'packtest',
      diskGiB: 1,
      workdir: '/srv/app',
      users: [
        makeUser({ username: 'alice', passwd: SECRET, sudo: true, sshPwauth: true, sshAuthorizedKeys: [KEY] }),
        makeUser({ username: 'bob', sshAuthorizedKeys: [KEY] }),
        makeUser({ username: 'carol', passwd: 'x-locked-1', lockPasswd: true, sshPwauth: true, chpasswdExpire: true }),
      ],
      env: [
        { key: 'GREETING', value: "hello 'world'", scope: { kind: 'system' } },
        { key: 'ALICE_ONLY', value: 'yes', scope: { kind: 'user', name: 'alice' } },
      ],
      run: ['echo "$GREETING" > built.txt', 'pwd > where.txt'],
      expose: [8080],
      entrypoint: { form: 'shell', command: 'echo hi; sleep 5' },
    });
    const events: BuildEvent[] = [];
    const r = await builder.build({ spec, dir, owner: 'test-owner', onEvent: (e) => events.push(e) });
    assert.equal(r.cached, false);
    assert.match(r.id, /^[0-9a-f]{64}$/);
    const fp = join(work, 'data', 'formpacks', r.id);
    const m = JSON.parse(readFileSync(join(fp, 'manifest.json'), 'utf8'));
    assert.deepEqual(m, r.manifest);
    assert.equal(m.name, 'packtest');
    assert.equal(m.owner, 'test-owner');
    assert.deepEqual(m.resources, { vcpu: 1, memMiB: 512, diskGiB: 1 });
    assert.equal(m.cmdline, 'console=ttyS0 root=/dev/vda rw panic=-1');
    assert.equal(m.init, '/sbin/form-init');
    assert.deepEqual(m.guest, { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' });
    assert.equal(m.formfile.users[0]?.passwd, '[redacted]');
    for (const a of Object.values(m.artifacts) as Array<{ file: string; sha256: string; bytes: number }>) {
      const h = spawnSync('sha256sum', [join(fp, a.file)], { encoding: 'utf8' }).stdout.split(' ')[0];
      assert.equal(h, a.sha256, a.file);
    }
    const steps = events.filter((e) => e.type === 'step').map((e) => (e as { step: string }).step);
    for (const s of ['context', 'base', 'packages', 'rootfs', 'configure', 'run', 'disk', 'boot-files', 'done']) {
      assert.ok(steps.includes(s as never), `step ${s} in ${steps.join(',')}`);
    }
    const info = JSON.parse(
      spawnSync('qemu-img', ['info', '--output=json', join(fp, 'disk.qcow2')], { encoding: 'utf8' }).stdout,
    );
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], 2 ** 30);

    // Look inside the image without mounting it.
    const raw = join(work, 'disk.raw');
    assert.equal(spawnSync('qemu-img', ['convert', '-O', 'raw', join(fp, 'disk.qcow2'), raw]).status, 0);
    const shadow = debugfsCat(raw, '/etc/shadow');
    assert.match(shadow, /^alice:\$6\$[^:]+:/m);
    assert.match(shadow, /^bob:\*:/m);
    assert.match(shadow, /^carol:!\$6\$[^:]+:0:/m, 'locked, and expired (last change 0)');
    const sshd = debugfsCat(raw, '/etc/ssh/sshd_config');
    assert.match(sshd, /^PasswordAuthentication no$/m);
    assert.match(sshd, /^Match User alice\n\s+PasswordAuthentication yes$/m);
    assert.doesNotMatch(sshd, /bob|carol/);
    assert.match(debugfsCat(raw, '/etc/sudoers.d/90-form-alice'), /^alice ALL=\(ALL\) NOPASSWD:ALL$/m);
    assert.equal(debugfsCat(raw, '/etc/sudoers.d/90-form-bob'), '');
    assert.match(debugfsCat(raw, '/etc/group'), /^sudo:x:\d+:alice$/m);
    assert.equal(debugfsCat(raw, '/home/alice/.ssh/authorized_keys').trim(), KEY);
    assert.equal(debugfsCat(raw, '/home/bob/.ssh/authorized_keys').trim(), KEY);
    assert.match(debugfsCat(raw, '/home/alice/.profile'), /export ALICE_ONLY='yes'/);
    assert.equal(debugfsCat(raw, '/srv/app/a.txt'), 'file a\n');
    assert.equal(debugfsCat(raw, '/srv/app/sub/b.txt'), 'file b\n');
    assert.equal(debugfsCat(raw, '/srv/app/Formfile'), '', 'the Formfile is never copied');
    assert.equal(debugfsCat(raw, '/srv/app/built.txt'), "hello 'world'\n");
    assert.equal(debugfsCat(raw, '/srv/app/where.txt'), '/srv/app\n');
    assert.match(
      debugfsCat(raw, '/etc/form/entrypoint'),
      /cd '\/srv\/app' \|\| exit 1\nexec \/bin\/sh -c 'echo hi; sleep 5'/,
    );
    assert.match(debugfsCat(raw, '/etc/form/env'), /export GREETING='hello '\\''world'\\'''/);
    assert.match(debugfsCat(raw, '/usr/sbin/form-init'), /FORM-INIT-READY/);
    assert.equal(debugfsCat(raw, '/etc/ssh/ssh_host_ed25519_key'), '', 'no baked-in host key');
    assert.equal(debugfsCat(raw, '/etc/hostname').trim(), 'packtest');
    assert.equal(await fileContains(raw, SECRET), false, 'plaintext password not in the image');
    assert.equal(readFileSync(join(fp, 'manifest.json'), 'utf8').includes(SECRET), false);
    assert.equal(JSON.stringify(events).includes(SECRET), false, 'plaintext password not in the build log');
    rmSync(raw);

    // Same inputs -> same ID, returned without building.
    const again = await builder.build({ spec, dir, owner: 'someone-else' });
    assert.equal(again.id, r.id);
    assert.equal(again.cached, true);
    assert.equal(again.manifest.owner, 'test-owner');
    assert.deepEqual(
      builder.list().map((x) => x.id),
      [r.id],
    );

    // Content change -> new ID (not built here).
    writeFileSync(join(dir, 'a.txt'), 'changed\n');
    assert.notEqual(await builder.idOf(spec, dir), r.id);
  });

  test('an unknown package is named and refused before any image work', async () => {
    const dir = ctxDir('unknown-pkg', {});
    const spec = makeSpec({ name: 'x', noCopy: true, install: ['python3', 'no-such-package-zz'] });
    const steps: string[] = [];
    await assert.rejects(
      builder.build({ spec, dir, owner: 'o', onEvent: (e) => e.type === 'step' && steps.push(e.step) }),
      isFormError('PACK_UNKNOWN_PACKAGE', /no-such-package-zz/),
    );
    assert.ok(!steps.includes('packages'), 'stopped before installing');
    await assert.rejects(
      builder.build({ spec: makeSpec({ name: 'x', noCopy: true, install: ['bad;rm -rf /'] }), dir, owner: 'o' }),
      isFormError('PACK_UNKNOWN_PACKAGE', /not a valid Debian package name/),
    );
  });

  test('a failing RUN shows its output and exit code and leaves nothing behind', async () => {
    const before = packDirs(join(work, 'data'));
    const dir = ctxDir('run-fail', {});
    const spec = makeSpec({
      name: 'runfail',
      noCopy: true,
      diskGiB: 1,
      run: ['echo boom-output; echo to-stderr >&2; exit 7'],
    });
    await assert.rejects(
      builder.build({ spec, dir, owner: 'o' }),
      isFormError('PACK_BUILD_FAILED', /exit code 7[\s\S]*boom-output[\s\S]*to-stderr/),
    );
    assert.deepEqual(packDirs(join(work, 'data')), before);
  });

  test('content larger than DISK is refused with the size it needs', async () => {
    const dir = ctxDir('too-big', {});
    // A sparse 1.5 GiB file: counts at its full size in the image, costs nothing here.
    spawnSync('truncate', ['-s', '1536M', join(dir, 'big.bin')]);
    const spec = makeSpec({ name: 'toobig', diskGiB: 1 });
    await assert.rejects(builder.build({ spec, dir, owner: 'o' }), (err: unknown) => {
      isFormError('PACK_DISK_TOO_SMALL', /DISK 1 GiB: the content needs about \d+ MiB/)(err);
      assert.match((err as FormError).hint ?? '', /Set DISK 2 \(or more\)/);
      return true;
    });
    assert.ok(!packDirs(join(work, 'data')).some((n) => n.startsWith('.tmp-')));
  });

  test('two concurrent builds of one ID do the work once; an aborted build leaves no artifact', async () => {
    const dir = ctxDir('concurrent', { 'x.txt': `${Date.now()}\n` });
    const spec = makeSpec({ name: 'conc', diskGiB: 1 });
    const other = new Builder({ dataDir: join(work, 'data'), cacheDir: CACHE_DIR });
    const [a, b] = await Promise.all([
      builder.build({ spec, dir, owner: 'o' }),
      other.build({ spec, dir, owner: 'o' }),
    ]);
    assert.equal(a.id, b.id);
    assert.deepEqual([a.cached, b.cached].sort(), [false, true]);

    const ac = new AbortController();
    const dir2 = ctxDir('aborted', { 'y.txt': `${Date.now()}\n` });
    const spec2 = makeSpec({ name: 'aborted', diskGiB: 1 });
    const id2 = await builder.idOf(spec2, dir2);
    await assert.rejects(
      builder.build({
        spec: spec2,
        dir: dir2,
        owner: 'o',
        signal: ac.signal,
        onEvent: (e) => e.type === 'step' && e.step === 'rootfs' && ac.abort(),
      }),
    );
    assert.equal(builder.get(id2), null);
    assert.ok(!packDirs(join(work, 'data')).some((n) => n.startsWith('.tmp-') || n === id2));
  });

  test('symlinks out of the build directory and COPY outside it are refused', async () => {
    const dir = ctxDir('links', { 'ok.txt': 'ok' });
    symlinkSync('/etc/passwd', join(dir, 'evil'));
    await assert.rejects(builder.idOf(makeSpec({ name: 'l' }), dir), isFormError('PACK_BAD_ARCHIVE', /evil/));
    await assert.rejects(
      builder.idOf(makeSpec({ name: 'l', copy: [{ src: '../outside', dst: '/x' }] }), dir),
      isFormError('FORMFILE_BAD_PATH', /outside the build directory/),
    );
  });
});
