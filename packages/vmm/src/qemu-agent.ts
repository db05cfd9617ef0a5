import { FormError } from '@formation/interface';
import type { DriverVm, GuestAgent } from './driver.ts';
import { sleep } from './qemu-process.ts';
import type { QmpClient } from './qmp.ts';

// The guest agent (qemu-ga over virtio-serial) as the driver's GuestAgent: each call gets a fresh
// connection from `call` (the driver's per-VM serialized agentCall).

/** Runs `fn` with a guest-agent connection of the VM, within `timeoutMs`. */
export type AgentCall = <T>(timeoutMs: number, fn: (ga: QmpClient) => Promise<T>) => Promise<T>;

/** The GuestAgent of VM `vm` over `call`. */
export function qemuGuestAgent(vm: DriverVm, call: AgentCall): GuestAgent {
  return {
    ping: (timeoutMs = 2000) =>
      call(timeoutMs, async (ga) => {
        await ga.execute('guest-ping');
      }),
    exec: (path, args, timeoutMs = 10_000) =>
      call(timeoutMs, async (ga) => {
        const { pid } = await ga.execute<{ pid: number }>('guest-exec', { path, arg: args, 'capture-output': true });
        const end = Date.now() + timeoutMs;
        for (;;) {
          const st = await ga.execute<{
            exited: boolean;
            exitcode?: number;
            signal?: number;
            'out-data'?: string;
            'err-data'?: string;
          }>('guest-exec-status', { pid });
          if (st.exited) {
            return {
              exitcode: st.exitcode ?? (st.signal ? 128 + st.signal : -1),
              stdout: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8'),
              stderr: Buffer.from(st['err-data'] ?? '', 'base64').toString('utf8'),
            };
          }
          if (Date.now() > end) throw new FormError('TIMEOUT', `Command ${path} in VM ${vm.spec.id} did not finish`);
          await sleep(30);
        }
      }),
    readFile: (path, maxBytes = 65536, timeoutMs = 3000) =>
      call(timeoutMs, async (ga) => {
        const h = await ga.execute<number>('guest-file-open', { path, mode: 'r' });
        try {
          const r = await ga.execute<{ 'buf-b64': string }>('guest-file-read', { handle: h, count: maxBytes });
          return Buffer.from(r['buf-b64'], 'base64').toString('utf8');
        } finally {
          await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
        }
      }),
    readRange: (path, offset, maxBytes, timeoutMs = 3000) =>
      call(timeoutMs, async (ga) => {
        const h = await ga.execute<number>('guest-file-open', { path, mode: 'r' });
        try {
          const end = await ga.execute<{ position: number }>('guest-file-seek', {
            handle: h,
            offset: 0,
            whence: 'end',
          });
          const size = end.position;
          if (offset >= size || maxBytes <= 0) return { data: Buffer.alloc(0), size };
          await ga.execute('guest-file-seek', { handle: h, offset, whence: 'set' });
          const r = await ga.execute<{ 'buf-b64': string }>('guest-file-read', {
            handle: h,
            count: Math.min(maxBytes, size - offset),
          });
          return { data: Buffer.from(r['buf-b64'], 'base64'), size };
        } finally {
          await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
        }
      }),
    fsfreeze: (freeze) =>
      call(5000, (ga) => ga.execute<number>(freeze ? 'guest-fsfreeze-freeze' : 'guest-fsfreeze-thaw')),
  };
}

/** Write small files into the guest over one agent connection, in order (each complete before the next). */
export async function writeFilesOverAgent(ga: QmpClient, files: Array<{ path: string; data: string }>): Promise<void> {
  for (const f of files) {
    const h = await ga.execute<number>('guest-file-open', { path: f.path, mode: 'w' });
    try {
      if (f.data.length > 0) {
        await ga.execute('guest-file-write', { handle: h, 'buf-b64': Buffer.from(f.data).toString('base64') });
      }
      await ga.execute('guest-file-flush', { handle: h });
    } finally {
      await ga.execute('guest-file-close', { handle: h }).catch(() => undefined);
    }
  }
}
