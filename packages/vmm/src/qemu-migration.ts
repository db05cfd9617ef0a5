import type { Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chown, lstat, mkdir, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FormError } from '@formation/interface';
import type { DriverVm } from './driver.ts';
import { sleep } from './qemu-process.ts';
import type { QmpClient } from './qmp.ts';

// Saving and loading a VM's memory + device state: QEMU migrates over unix sockets the driver serves
// (not `exec:`, which the sandbox's spawn=deny forbids).

/** Where dropped QEMUs find their migration sockets (root's, 0711; one 0700 dir per VM owned by its uid). */
export const MIGRATE_ROOT = '/run/formation-qemu';

/** Serve `sock` for one outgoing migration and write what QEMU sends to `file`; `run` starts and awaits it. */
export async function receiveMigration<T>(
  sock: string,
  file: string,
  owner: { uid: number; gid: number } | undefined,
  run: () => Promise<T>,
  hash?: Hash,
): Promise<T> {
  await rm(sock, { force: true });
  const server = createServer();
  let conn: Socket | undefined;
  const written = new Promise<void>((ok, fail) => {
    server.once('connection', (c) => {
      conn = c;
      server.close();
      if (hash) c.on('data', (d: Buffer) => hash.update(d));
      pipeline(c, createWriteStream(file, { mode: 0o600 })).then(ok, fail);
    });
  });
  // When `run` fails (QEMU killed mid-save: a template build stopped by close or yieldRoom), the
  // connection is destroyed below and this rejects with nobody awaiting it: an unhandled rejection,
  // which ends a Node process (CI saw it as ERR_STREAM_PREMATURE_CLOSE after a VMM closed mid-build).
  written.catch(() => undefined);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(resolve(sock), ok);
  });
  // QEMU connects after dropping to its own uid: the socket must be its to write to.
  if (owner) await chown(sock, owner.uid, owner.gid);
  try {
    const r = await run();
    await written;
    return r;
  } finally {
    conn?.destroy();
    server.close();
    await rm(sock, { force: true });
  }
}

/** Stream a saved state file into QEMU's incoming migration socket (hashing what it sends into `hash`). */
export async function pollMigration(qmp: QmpClient, timeoutMs: number): Promise<{ downtime?: number }> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = await qmp.execute<{ status?: string; downtime?: number; 'error-desc'?: string }>('query-migrate');
    if (r.status === 'completed') return { downtime: r.downtime };
    if (r.status === 'failed' || r.status === 'cancelled') {
      throw new FormError('VM_HYPERVISOR', `Migration ${r.status}: ${r['error-desc'] ?? 'no detail'}`);
    }
    if (Date.now() > end) throw new FormError('TIMEOUT', `Migration did not complete within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * A directory for migration sockets that QEMU can use after dropping privileges (it creates the
 * incoming socket and connects to the outgoing one). The VM dir stays root's and may sit under a
 * 0700 parent, so a dropped QEMU (`who`) gets its own dir under MIGRATE_ROOT (root's, 0711), 0700 and its uid's.
 */
export async function migrationDir(vm: DriverVm, who: { uid: number; gid: number } | undefined): Promise<string> {
  if (!who) {
    const dir = resolve(vm.spec.dir, 'migrate');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  }
  await mkdir(MIGRATE_ROOT, { recursive: true, mode: 0o711 });
  const st = await lstat(MIGRATE_ROOT);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new FormError(
      'VM_HYPERVISOR',
      `Cannot snapshot or restore VM ${vm.spec.id}: ${MIGRATE_ROOT} is not a root-owned directory others cannot write`,
      {
        hint: `Remove ${MIGRATE_ROOT}; the VMM recreates it.`,
      },
    );
  }
  const dir = join(MIGRATE_ROOT, vm.spec.id);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { mode: 0o700 });
  await chown(dir, who.uid, who.gid);
  return dir;
}
