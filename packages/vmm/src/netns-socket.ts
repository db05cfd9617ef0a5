import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { FormError } from '@formation/interface';

const CHILD = fileURLToPath(new URL('./netns-bind-child.ts', import.meta.url));

/**
 * UDP sockets bound inside a network namespace, used from this process: a short-lived child runs in the
 * namespace (`ip netns exec`), binds them and passes them over its IPC channel. Without `netns` they
 * are bound here. `binds` are `host:port` (port 0 = any).
 *
 * @example const [dns] = await bindUdpInNetns('n1', ['10.129.7.1:53']);
 */
export async function bindUdpInNetns(netns: string | undefined, binds: string[]): Promise<Socket[]> {
  if (!netns) {
    const out: Socket[] = [];
    try {
      for (const spec of binds) out.push(await bindHere(spec));
    } catch (err) {
      for (const s of out) s.close();
      throw err;
    }
    return out;
  }
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, CHILD, ...binds], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const sockets: Socket[] = [];
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      for (const s of sockets) s.close();
      if (child.exitCode === null && child.pid) child.kill();
      reject(
        new FormError('NET_ERROR', `Cannot bind UDP ${binds.join(', ')} in namespace ${netns}: ${why}`, {
          hint: 'The namespace and the address must exist, and the port must be free.',
        }),
      );
    };
    const timer = setTimeout(() => fail('the helper did not answer within 10 s'), 10_000);
    child.on('message', (m: { index?: number; error?: string }, handle?: unknown) => {
      if (m.error) fail(m.error);
      else if (handle && typeof m.index === 'number') {
        sockets[m.index] = handle as Socket;
        if (sockets.filter(Boolean).length === binds.length) {
          clearTimeout(timer);
          settled = true;
          if (child.connected) child.disconnect();
          resolve(sockets);
        }
      }
    });
    child.on('error', (err) => fail(err.message));
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!settled) fail(`the helper exited (${code}) ${stderr.trim()}`);
    });
  });
}

function bindHere(spec: string): Promise<Socket> {
  const i = spec.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', (err) =>
      reject(new FormError('NET_ERROR', `Cannot bind UDP ${spec}: ${err.message}`, { hint: 'The port must be free.' })),
    );
    s.bind(Number(spec.slice(i + 1)), spec.slice(0, i), () => resolve(s));
  });
}
