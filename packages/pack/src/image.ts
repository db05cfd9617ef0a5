import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { GUEST_CONTRACT, guestFiles } from '@formation/guest';
import { FormError, type FormfileSpec, type FormfileUser } from '@formation/interface';
import { type SandboxLimits, sandboxRun, shQuote } from './chroot.ts';
import { contextPath, FORMFILE_NAME } from './context.ts';
import { run, runOk } from './exec.ts';

export interface CustomizeOptions {
  rootfs: string;
  spec: FormfileSpec;
  /** The build directory (its COPY sources are already checked by readBuildContext). */
  contextDir: string;
  id: string;
  onLine?: (line: string) => void;
  /** Called before each RUN step with its index. */
  onRun?: (index: number, command: string) => void;
  signal?: AbortSignal;
  /** Longest one RUN step may take (default DEFAULT_RUN_TIMEOUT_MS). */
  runTimeoutMs?: number;
  /** Sandbox identity and limits (default DEFAULT_SANDBOX). */
  sandbox?: SandboxLimits;
}

/** Default longest time of one RUN step. */
export const DEFAULT_RUN_TIMEOUT_MS = 10 * 60_000;

/** The error of a build step that ran out of time. */
export function buildTimeout(what: string, ms: number, setting: string): FormError {
  return new FormError('PACK_BUILD_TIMEOUT', `Cannot build: ${what} did not finish within ${formatMs(ms)}`, {
    hint: `Make the step finish sooner (a RUN step has no network and must not wait for input), or raise ${setting} in the pack config.`,
    details: { step: what, timeoutMs: ms },
  });
}

function formatMs(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 100) / 10} s`;
}

const USERNAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
const STAGE = '/.form-context';

function absImagePath(p: string, what: string): string {
  const n = posix.normalize(p);
  if (!n.startsWith('/') || n.includes('\0') || n.includes('\n')) {
    throw new FormError('FORMFILE_BAD_PATH', `Cannot use ${what} ${p}: it must be an absolute path in the image`);
  }
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** Hash a password as SHA-512 crypt (`$6$`), feeding it on stdin so it never shows in argv or logs. */
export async function hashPassword(plain: string): Promise<string> {
  const r = await run(['openssl', 'passwd', '-6', '-stdin'], { input: `${plain}\n` });
  const hash = r.stdout.trim();
  if (r.code !== 0 || !hash.startsWith('$6$'))
    throw new FormError('INTERNAL', 'Cannot hash a USER password with openssl');
  return hash;
}

function sshdConfig(users: FormfileUser[]): string {
  const pwUsers = users.filter((u) => u.sshPwauth && u.passwd && !u.lockPasswd).map((u) => u.username);
  const rootOff = users.some((u) => u.disableRoot);
  return [
    '# Written by the Formation Formpack builder.',
    'HostKey /etc/ssh/ssh_host_ed25519_key',
    `PermitRootLogin ${rootOff ? 'no' : 'prohibit-password'}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM yes',
    'X11Forwarding no',
    'PrintMotd no',
    'AcceptEnv LANG LC_*',
    'Subsystem sftp /usr/lib/openssh/sftp-server',
    // Password login only for the users whose USER line says ssh_pwauth:true.
    ...(pwUsers.length ? [`Match User ${pwUsers.join(',')}`, '    PasswordAuthentication yes'] : []),
    '',
  ].join('\n');
}

function envLines(spec: FormfileSpec, scopes: Array<'system' | 'service'>): string[] {
  return spec.env.filter((e) => (scopes as string[]).includes(e.scope.kind)).map((e) => `${e.key}=${e.value}`);
}

function entrypointScript(spec: FormfileSpec, workdir: string): string | null {
  const ep = spec.entrypoint;
  if (!ep) return null;
  const cmd = ep.form === 'exec' ? ep.argv.map(shQuote).join(' ') : `/bin/sh -c ${shQuote(ep.command)}`;
  return `#!/bin/sh\n# ENTRYPOINT, written by the Formpack builder; run and restarted by ${GUEST_CONTRACT.init}.\n. /etc/form/env\ncd ${shQuote(workdir)} || exit 1\nexec ${cmd}\n`;
}

/**
 * Turn a copy of the package layer into the instance image: users, files, environment, entrypoint,
 * RUN steps and the guest init. Host-side writes happen only before any RUN step (later, a RUN could
 * have replaced a directory with a symlink pointing out of the image); later changes run in the chroot.
 */
export async function customizeRootfs(o: CustomizeOptions): Promise<void> {
  const { rootfs: R, spec } = o;
  const workdir = absImagePath(spec.workdir, 'WORKDIR');
  for (const u of spec.users) {
    if (!USERNAME.test(u.username))
      throw new FormError('FORMFILE_BAD_USER', `Cannot create user ${u.username}: invalid name`);
  }
  for (const e of spec.env) {
    if (!ENV_KEY.test(e.key))
      throw new FormError('FORMFILE_BAD_VALUE', `Cannot set ENV ${e.key}: invalid variable name`);
  }

  // 1. Host-side writes into the trusted layer copy.
  writeFileSync(join(R, 'etc/hostname'), `${spec.name}\n`);
  for (const f of readdirSync(join(R, 'etc/ssh'))) if (f.startsWith('ssh_host_')) rmSync(join(R, 'etc/ssh', f));
  writeFileSync(join(R, 'etc/ssh/sshd_config'), sshdConfig(spec.users));
  for (const g of guestFiles()) {
    copyFileSync(g.source, join(R, g.target));
    // copyFileSync keeps the source mode only on some platforms; set it explicitly.
    chmodSync(join(R, g.target), g.mode);
  }
  mkdirSync(join(R, 'etc/form'), { recursive: true });
  mkdirSync(join(R, 'var/log/form'), { recursive: true });
  const svcEnv = envLines(spec, ['system', 'service']);
  writeFileSync(
    join(R, 'etc/form/env'),
    `# ENV for the entrypoint (system and service scope)\n${svcEnv.map((l) => `export ${l.split('=')[0]}=${shQuote(l.slice(l.indexOf('=') + 1))}`).join('\n')}\n`,
  );
  const sysEnv = spec.env.filter((e) => e.scope.kind === 'system');
  writeFileSync(
    join(R, 'etc/profile.d/form-env.sh'),
    sysEnv.map((e) => `export ${e.key}=${shQuote(e.value)}`).join('\n') + '\n',
  );
  // TERMINATE=ingress: the guest serves no TLS (no port file: form-tls stays off).
  if (spec.https && spec.https.terminate !== 'ingress')
    writeFileSync(join(R, GUEST_CONTRACT.httpsPortFile.slice(1)), `${spec.https.port}\n`);
  const ep = entrypointScript(spec, workdir);
  if (ep) writeFileSync(join(R, 'etc/form/entrypoint'), ep, { mode: 0o755 });
  writeFileSync(
    join(R, 'etc/form/formpack.json'),
    `${JSON.stringify({ id: o.id, name: spec.name, workdir, expose: spec.expose }, null, 2)}\n`,
  );
  for (const u of spec.users.filter((x) => x.sudo)) {
    writeFileSync(join(R, `etc/sudoers.d/90-form-${u.username}`), `${u.username} ALL=(ALL) NOPASSWD:ALL\n`, {
      mode: 0o440,
    });
  }
  copyFileSync('/etc/resolv.conf', join(R, 'etc/resolv.conf'));
  writeFileSync(join(R, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  // Stage the build context inside the image; the chroot copies it to its destinations, so a COPY
  // destination can never resolve through a symlink to the host.
  const stage = join(R, STAGE);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage);
  const copies: Array<{ src: string; dst: string }> = spec.noCopy
    ? []
    : spec.copy.length
      ? spec.copy.map((c) => ({ src: contextPath(c.src), dst: absImagePath(c.dst, 'COPY destination') }))
      : [{ src: '.', dst: workdir }];
  for (const [i, c] of copies.entries()) {
    const from = c.src === '.' ? o.contextDir : join(o.contextDir, c.src);
    const staged = `${STAGE}/${i}`;
    const st = lstatSync(from);
    if (st.isDirectory()) {
      mkdirSync(join(R, staged));
      const names = readdirSync(from).filter((n) => !(c.src === '.' && n === FORMFILE_NAME));
      if (names.length) {
        await runOk(
          [
            'cp',
            '-R',
            '--preserve=mode,timestamps',
            '--no-dereference',
            ...names.map((n) => join(from, n)),
            join(R, staged),
          ],
          `stage COPY ${c.src}`,
        );
      }
    } else {
      await runOk(['cp', '-P', '--preserve=mode,timestamps', from, join(R, staged)], `stage COPY ${c.src}`);
    }
  }

  // 2. In the chroot: users, WORKDIR, COPY.
  const lines: string[] = ['set -e'];
  const stdin: string[] = [];
  for (const u of spec.users) {
    const n = shQuote(u.username);
    const shell = shQuote(u.shell || '/bin/bash');
    lines.push(`if id -u ${n} >/dev/null 2>&1; then usermod -s ${shell} ${n}; else useradd -m -U -s ${shell} ${n}; fi`);
    for (const g of [...u.groups, ...(u.sudo ? ['sudo'] : [])]) {
      lines.push(`getent group ${shQuote(g)} >/dev/null || groupadd ${shQuote(g)}`, `usermod -aG ${shQuote(g)} ${n}`);
    }
    if (u.passwd) {
      stdin.push(`${u.username}:${await hashPassword(u.passwd)}`);
    } else {
      lines.push(`usermod -p '*' ${n}`); // no password: key login only, account not "locked"
    }
    const home = u.username === 'root' ? '/root' : `$(getent passwd ${n} | cut -d: -f6)`;
    if (u.sshAuthorizedKeys.length) {
      const keys = u.sshAuthorizedKeys.map((k) => k.replaceAll('\n', ' ').trim()).join('\n');
      lines.push(
        `H=${home}; mkdir -p "$H/.ssh"; printf '%s\\n' ${shQuote(keys)} > "$H/.ssh/authorized_keys"`,
        `chmod 700 "$H/.ssh"; chmod 600 "$H/.ssh/authorized_keys"; chown -R ${n}: "$H/.ssh"`,
      );
    }
    const userEnv = spec.env.filter((e) => e.scope.kind === 'user' && e.scope.name === u.username);
    if (userEnv.length) {
      const text = userEnv.map((e) => `export ${e.key}=${shQuote(e.value)}`).join('\n');
      lines.push(`H=${home}; printf '%s\\n' ${shQuote(text)} >> "$H/.profile"; chown ${n}: "$H/.profile"`);
    }
  }
  if (stdin.length) lines.push('chpasswd -e'); // reads user:hash lines from stdin
  // After chpasswd (which resets the last-change date): lock_passwd keeps the hash but refuses password
  // logins (keys still work, sshd uses PAM); chpasswd_expire forces a new password at first login.
  for (const u of spec.users.filter((x) => x.passwd)) {
    if (u.lockPasswd) lines.push(`usermod -L ${shQuote(u.username)}`);
    if (u.chpasswdExpire) lines.push(`chage -d 0 ${shQuote(u.username)}`);
  }
  lines.push(`mkdir -p ${shQuote(workdir)}`);
  for (const [i, c] of copies.entries()) {
    const staged = `${STAGE}/${i}`;
    const st = lstatSync(c.src === '.' ? o.contextDir : join(o.contextDir, c.src));
    const dst = shQuote(c.dst);
    if (st.isDirectory()) {
      lines.push(`mkdir -p ${dst}`, `cp -R --preserve=mode,timestamps ${staged}/. ${dst}/`);
    } else {
      lines.push(
        `if [ -d ${dst} ] || [ "\${DST_SLASH_${i}:-}" = 1 ]; then mkdir -p ${dst}; cp -P --preserve=mode,timestamps ${staged} ${dst}/${shQuote(posix.basename(c.src))}; else mkdir -p "$(dirname ${dst})"; cp -P --preserve=mode,timestamps ${staged} ${dst}; fi`,
      );
    }
  }
  lines.push(`rm -rf ${STAGE}`);
  const slashVars = spec.copy.map((c, i) => (c.dst.endsWith('/') ? `DST_SLASH_${i}=1` : '')).filter(Boolean);
  const box = { limits: o.sandbox, hostname: spec.name };
  const setup = await sandboxRun(R, lines.join('\n'), {
    ...box,
    input: stdin.length ? `${stdin.join('\n')}\n` : '',
    env: slashVars,
    signal: o.signal,
  });
  if (setup.code !== 0) {
    throw new FormError(
      'PACK_BUILD_FAILED',
      `Cannot set up users and files: exit code ${setup.code}\n${setup.output.trim().split('\n').slice(-10).join('\n')}`,
    );
  }

  // 3. RUN steps, in order, in WORKDIR with ENV applied.
  for (const [i, cmd] of spec.run.entries()) {
    o.onRun?.(i, cmd);
    const stepMs = o.runTimeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
    const timer = AbortSignal.timeout(stepMs);
    let r: Awaited<ReturnType<typeof sandboxRun>>;
    try {
      r = await sandboxRun(R, `cd ${shQuote(workdir)} && ${cmd}`, {
        ...box,
        env: svcEnv,
        onLine: o.onLine,
        signal: o.signal ? AbortSignal.any([o.signal, timer]) : timer,
      });
    } catch (err) {
      if (timer.aborted && !o.signal?.aborted) {
        throw buildTimeout(`RUN ${cmd} (step ${i + 1}/${spec.run.length})`, stepMs, 'runTimeoutMs');
      }
      throw err;
    }
    if (r.code !== 0) {
      const tail = r.output.trim().split('\n').slice(-20).join('\n');
      throw new FormError('PACK_BUILD_FAILED', `Cannot build: RUN ${cmd} failed with exit code ${r.code}\n${tail}`, {
        hint: 'Fix the command (it runs with /bin/sh -c in WORKDIR at build time).',
        details: { step: 'run', index: i, exitCode: r.code, output: tail },
      });
    }
  }

  // 4. Final clean-up inside the image (a RUN may have added host keys, apt lists or caches).
  const fin = await sandboxRun(
    R,
    [
      'rm -f /usr/sbin/policy-rc.d /etc/ssh/ssh_host_*',
      'rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt/* /var/log/dpkg.log /tmp/* /root/.bash_history',
      'mkdir -p /var/lib/apt/lists/partial',
      `echo 'nameserver ${GUEST_CONTRACT.defaults.dns}' > /etc/resolv.conf`,
      `test -x ${GUEST_CONTRACT.init}`,
    ].join('\n'),
    { ...box, signal: o.signal },
  );
  if (fin.code !== 0) {
    throw new FormError(
      'PACK_BUILD_FAILED',
      `Cannot finish the image: ${fin.output.trim().split('\n').slice(-5).join('\n')}`,
      {
        hint: `A RUN step may have removed ${GUEST_CONTRACT.init}.`,
      },
    );
  }
}

/** Bytes the content needs in ext4 (4 KiB blocks, 256 B inodes), walking without following symlinks. */
export function contentBytes(root: string): { bytes: number; inodes: number } {
  let bytes = 0;
  let inodes = 0;
  const stack = [root];
  while (stack.length) {
    const dir = stack.pop()!;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      inodes++;
      if (st.isDirectory()) {
        bytes += 4096;
        stack.push(p);
      } else if (st.isFile()) bytes += Math.ceil(st.size / 4096) * 4096;
      else if (st.isSymbolicLink() && st.size > 59) bytes += 4096;
    }
  }
  return { bytes: bytes + inodes * 256, inodes };
}

/** Usable bytes of an ext4 filesystem of `diskGiB` (journal, inode tables and metadata taken off). */
export function usableBytes(diskGiB: number): number {
  const size = diskGiB * 2 ** 30;
  const journal = size >= 2 ** 31 ? 64 * 2 ** 20 : size >= 2 ** 30 ? 32 * 2 ** 20 : 16 * 2 ** 20;
  return Math.floor(size * (1 - 0.016 - 0.01) - journal);
}

function diskTooSmall(spec: FormfileSpec, need: number): FormError {
  const needGiB = Math.ceil((need * 1.1 + 96 * 2 ** 20) / 2 ** 30);
  return new FormError(
    'PACK_DISK_TOO_SMALL',
    `Cannot fit the image into DISK ${spec.diskGiB} GiB: the content needs about ${Math.ceil(need / 2 ** 20)} MiB (${Math.floor(usableBytes(spec.diskGiB) / 2 ** 20)} MiB usable)`,
    {
      hint: `Set DISK ${needGiB} (or more) in the Formfile.`,
      details: { neededBytes: need, suggestedDiskGiB: needGiB },
    },
  );
}

/** ext4 (mkfs.ext4 -d, never mounted) sized to DISK, then qcow2. Returns the qcow2 path. */
export async function makeDisk(
  rootfs: string,
  spec: FormfileSpec,
  workDir: string,
  signal?: AbortSignal,
): Promise<string> {
  const { bytes } = contentBytes(rootfs);
  if (bytes > usableBytes(spec.diskGiB)) throw diskTooSmall(spec, bytes);
  const ext4 = join(workDir, 'disk.ext4');
  const qcow2 = join(workDir, 'disk.qcow2');
  const r = await run(['mkfs.ext4', '-q', '-F', '-L', 'formroot', '-d', rootfs, ext4, `${spec.diskGiB}G`], { signal });
  if (r.code !== 0) {
    rmSync(ext4, { force: true });
    if (/Could not allocate block|No free space in the filesystem/i.test(r.output)) throw diskTooSmall(spec, bytes);
    if (/No space left on device/i.test(r.output)) {
      throw new FormError('DISK_FULL', 'Cannot write the disk image: no space left on the host disk', {
        hint: 'Free space in the data directory; the cache and earlier Formpacks are intact.',
      });
    }
    throw new FormError(
      'INTERNAL',
      `Cannot make the ext4 image: mkfs.ext4 exited with code ${r.code}\n${r.output.trim()}`,
    );
  }
  try {
    await runOk(['qemu-img', 'convert', '-O', 'qcow2', ext4, qcow2], 'convert the disk to qcow2', { signal });
  } finally {
    rmSync(ext4, { force: true });
  }
  if (!existsSync(qcow2)) throw new FormError('INTERNAL', 'Cannot find the qcow2 image after conversion');
  return qcow2;
}
