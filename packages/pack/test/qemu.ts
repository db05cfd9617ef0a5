import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { missingPrograms } from '@formation/interface';
import { until } from '@formation/interface/testing';

/** Test helpers: boot a Formpack under QEMU (TCG, -M pc, user net with hostfwd on 127.0.0.1). */

export function hasQemu(): boolean {
  return missingPrograms(['qemu-system-x86_64', 'qemu-img']).length === 0;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

export interface BootedVm {
  proc: ChildProcess;
  serial: string;
  qga: string;
  ports: Record<number, number>;
  exited: Promise<number | null>;
  kill(): void;
}

export async function bootFormpack(
  dir: string,
  work: string,
  guestPorts: number[],
  extraCmdline = '',
): Promise<BootedVm> {
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { cmdline: string };
  const overlay = join(work, 'vm.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', join(dir, 'disk.qcow2'), '-F', 'qcow2', overlay]);
  const ports: Record<number, number> = {};
  for (const p of guestPorts) ports[p] = await freePort();
  const fwd = guestPorts.map((p) => `hostfwd=tcp:127.0.0.1:${ports[p]}-:${p}`).join(',');
  const serial = join(work, 'serial.log');
  const qga = join(work, 'qga.sock');
  const proc = spawn(
    'qemu-system-x86_64',
    [
      '-accel',
      'tcg',
      '-M',
      'pc',
      '-m',
      '512',
      '-smp',
      '1',
      '-nodefaults',
      '-nographic',
      '-no-user-config',
      '-serial',
      `file:${serial}`,
      '-kernel',
      join(dir, 'vmlinuz'),
      '-initrd',
      join(dir, 'initramfs.img'),
      '-append',
      `${m.cmdline} ${extraCmdline}`.trim(),
      '-drive',
      `file=${overlay},if=none,id=d0,format=qcow2`,
      '-device',
      'virtio-blk-pci,drive=d0',
      '-netdev',
      `user,id=n0,${fwd}`,
      '-device',
      'virtio-net-pci,netdev=n0',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=qga0,path=${qga},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
      '-no-reboot',
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, serial, qga, ports, exited, kill: () => proc.exitCode === null && proc.kill('SIGKILL') };
}

/** Read the first line a TCP server sends (the SSH banner). */
export function banner(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    const done = (v: string | undefined) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(2000, () => done(undefined));
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) done(buf.split('\n')[0]?.trim());
    });
    s.on('error', () => done(undefined));
    s.on('close', () => done(undefined));
  });
}

/** One QGA command (after guest-sync); returns `return` or throws the QGA error. */
export function qga(sock: string, execute: string, args?: unknown, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (!existsSync(sock)) return reject(new Error('no qga socket'));
    const s = connect(sock);
    const id = Math.floor(Math.random() * 1e9);
    let buf = '';
    let synced = false;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`qga ${execute} timed out`));
    }, timeoutMs);
    s.on('connect', () => s.write(`${JSON.stringify({ execute: 'guest-sync', arguments: { id } })}\n`));
    s.on('data', (d) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (!line) continue;
        const msg = JSON.parse(line) as { return?: unknown; error?: { desc: string } };
        if (!synced) {
          if (msg.return === id) {
            synced = true;
            s.write(`${JSON.stringify(args === undefined ? { execute } : { execute, arguments: args })}\n`);
          }
          continue;
        }
        clearTimeout(t);
        s.destroy();
        if (msg.error) reject(new Error(msg.error.desc));
        else resolve(msg.return);
        return;
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Run a program in the guest through qemu-ga and return its exit code and stdout. */
export async function guestExec(sock: string, path: string, arg: string[]): Promise<{ code: number; out: string }> {
  const { pid } = (await qga(sock, 'guest-exec', { path, arg, 'capture-output': true })) as { pid: number };
  return until(
    `guest-exec ${path}`,
    async () => {
      const st = (await qga(sock, 'guest-exec-status', { pid })) as {
        exited: boolean;
        exitcode?: number;
        'out-data'?: string;
      };
      if (!st.exited) return undefined;
      return { code: st.exitcode ?? -1, out: Buffer.from(st['out-data'] ?? '', 'base64').toString() };
    },
    15_000,
    250,
  );
}
