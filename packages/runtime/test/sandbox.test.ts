// Issue 17: a runtime container's process must not reach the kernel's riskier interfaces (new
// namespaces, mounts, keyrings, ...) and, with a user namespace, is not even root-equivalent on the
// host as the container's root. Runs the real runc with the OCI spec ociSpec() writes.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '@formation/service';
import { chownTree, ociSpec, RuncContainer, type RuncContainerOptions, type UserNamespace } from '../src/runc.ts';
import { integrationSkip, tmp } from './helpers.ts';

const skip = await integrationSkip();
const logger = createLogger('silent');
const USERNS: UserNamespace = { hostId: 1_000_000_000, size: 65536 };

/** A root filesystem of host binaries (and the libraries ldd lists): sh, unshare, cat. */
function hostRootfs(dir: string): void {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'run/formrt', 'workspace', 'etc'])
    mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777); // runc 1.1 gives a tmpfs the mode of the directory it covers
  for (const b of ['/bin/sh', '/usr/bin/unshare', '/bin/cat']) {
    copyFileSync(b, join(dir, 'bin', b.split('/').at(-1) ?? ''));
    for (const m of execFileSync('ldd', [b], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g)) {
      const lib = m[1] ?? '';
      mkdirSync(join(dir, dirname(lib)), { recursive: true });
      copyFileSync(execFileSync('realpath', [lib], { encoding: 'utf8' }).trim(), join(dir, lib));
    }
  }
}

/** What the probe printed, one `key=value` a line. */
async function probe(work: string, id: string, userns: UserNamespace | undefined): Promise<Map<string, string>> {
  const script = [
    'while read k v rest; do case $k in Seccomp:|NoNewPrivs:|CapEff:|CapBnd:|Uid:) echo "$k=$v";; esac; done < /proc/self/status',
    'echo "uidmap=$(cat /proc/self/uid_map)"',
    'unshare -U sh -c : 2>/tmp/e; echo "unshare-user=$? $(cat /tmp/e)"',
    'unshare -Ur sh -c : 2>/tmp/e; echo "unshare-user-root=$? $(cat /tmp/e)"',
    'unshare -m sh -c : 2>/tmp/e; echo "unshare-mount=$? $(cat /tmp/e)"',
    'unshare -n sh -c : 2>/tmp/e; echo "unshare-net=$? $(cat /tmp/e)"',
    'cat /proc/kcore >/dev/null 2>&1; echo "kcore=$?"',
    '(echo h > /proc/sysrq-trigger) 2>/dev/null; echo "sysrq=$?"',
    'echo written > /workspace/w && echo "workspace=ok"',
  ].join('\n');
  const bundle = join(work, id);
  mkdirSync(join(bundle, 'run'), { recursive: true });
  mkdirSync(join(bundle, 'workspace'), { recursive: true });
  const o: RuncContainerOptions = {
    id,
    runcRoot: join(work, 'runc'),
    bundleDir: bundle,
    rootfs: join(work, 'rootfs'),
    image: { Entrypoint: ['/bin/sh', '-c', script] },
    limits: { memoryMiB: 64, cpus: 0.5, pids: 32 },
    logger,
    ...(userns ? { userns } : {}),
  };
  const c = new RuncContainer(o);
  await chownTree(join(bundle, 'run'), c.uid);
  await chownTree(join(bundle, 'workspace'), c.uid);
  writeFileSync(
    join(bundle, 'config.json'),
    JSON.stringify(ociSpec(o, join(bundle, 'run'), join(bundle, 'workspace'))),
  );
  const r = spawnSync('runc', ['--root', o.runcRoot, 'run', '--bundle', bundle, id], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  spawnSync('runc', ['--root', o.runcRoot, 'delete', '-f', id]);
  assert.equal(r.status, 0, `runc run failed: ${r.stderr}${r.stdout}`);
  const out = new Map<string, string>([['stderr', r.stderr]]);
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

describe('runtime containers: seccomp, no new privileges, one capability, user namespace', { skip }, () => {
  let work: string;
  before(() => {
    work = tmp('sandbox');
    chmodSync(work, 0o711); // the namespaced root must reach its rootfs (the manager does this for dataDir)
    hostRootfs(join(work, 'rootfs'));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const userns of [USERNS, undefined]) {
    const label = userns ? 'with a user namespace' : 'without a user namespace (seccomp alone)';
    it(`a container process cannot create namespaces (unshare -U/-Ur/-m/-n get EPERM), ${label}`, async () => {
      const out = await probe(work, `formrt-sbx-${process.pid}-${userns ? 'u' : 'n'}`, userns);
      for (const k of ['unshare-user', 'unshare-user-root', 'unshare-mount', 'unshare-net'])
        assert.match(
          out.get(k) ?? '',
          /^1 unshare: unshare failed: Operation not permitted$/,
          `${k}: ${out.get(k)} ${out.get('stderr')}`,
        );
      assert.equal(out.get('Seccomp:'), '2', 'a seccomp filter is installed');
      assert.equal(out.get('NoNewPrivs:'), '1');
      assert.equal(out.get('CapEff:'), '0000000000000000', 'a non-root process has no effective capability');
      assert.equal(out.get('CapBnd:'), '0000000000000400', 'bounding set: CAP_NET_BIND_SERVICE only');
      assert.match(out.get('kcore') ?? '', /[1-9]$/, '/proc/kcore is not readable');
      assert.match(out.get('sysrq') ?? '', /[1-9]$/, '/proc/sysrq-trigger is not writable');
      assert.equal(out.get('workspace'), 'ok', 'the workspace is writable');
      const ws = statSync(join(work, `formrt-sbx-${process.pid}-${userns ? 'u' : 'n'}`, 'workspace', 'w'));
      if (userns) {
        assert.match(out.get('uidmap') ?? '', new RegExp(`^0\\s+${USERNS.hostId}\\s+${USERNS.size}$`));
        assert.equal(ws.uid, USERNS.hostId + 65534, 'the container user is an unprivileged host uid');
      } else {
        assert.equal(ws.uid, 65534);
      }
      assert.match(out.get('Uid:') ?? '', /^65534/, 'the process is uid 65534 inside');
    });
  }

  it('the spec has the seccomp profile and a user namespace mapping only when asked', () => {
    const base: RuncContainerOptions = {
      id: 'x',
      runcRoot: '/run/x',
      bundleDir: '/b',
      rootfs: '/r',
      image: { Cmd: ['/x'] },
      limits: { memoryMiB: 64, cpus: 1, pids: 8 },
      logger,
    };
    const plain = ociSpec(base, '/s', '/w') as { linux: Record<string, unknown> };
    const withNs = ociSpec({ ...base, userns: USERNS }, '/s', '/w') as { linux: Record<string, unknown> };
    assert.equal(plain.linux.uidMappings, undefined);
    assert.deepEqual(withNs.linux.uidMappings, [{ containerID: 0, hostID: USERNS.hostId, size: USERNS.size }]);
    assert.equal((withNs.linux.seccomp as { defaultAction: string }).defaultAction, 'SCMP_ACT_ALLOW');
    assert.ok(JSON.stringify(withNs.linux.seccomp).includes('"keyctl"'));
    assert.equal(readFileSync('/proc/self/status', 'utf8').includes('Seccomp'), true);
  });
});
