// receiveMigration (src/qemu-migration.ts) without QEMU: a client plays QEMU on the socket.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { receiveMigration } from '../src/qemu-migration.ts';

const sendAndHold = (sock: string, data: string) =>
  new Promise<ReturnType<typeof connect>>((ok, fail) => {
    const c = connect(sock, () => {
      c.write(data, () => ok(c));
    });
    c.once('error', fail);
  });

test('receiveMigration writes what the peer sends; a run that fails mid-stream leaves no unhandled rejection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fmig-'));
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    // Whole stream: the file holds it, the result of run is returned.
    const ok = await receiveMigration(join(dir, 'a.sock'), join(dir, 'a.mig'), undefined, async () => {
      const c = await sendAndHold(join(dir, 'a.sock'), 'state');
      c.end();
      return 'done';
    });
    assert.equal(ok, 'done');
    assert.equal(readFileSync(join(dir, 'a.mig'), 'utf8'), 'state');
    assert.equal(existsSync(join(dir, 'a.sock')), false, 'the socket is removed');

    // QEMU dies mid-save: run rejects while the connection is open; the stream is cut.
    let held: ReturnType<typeof connect> | undefined;
    await assert.rejects(
      receiveMigration(join(dir, 'b.sock'), join(dir, 'b.mig'), undefined, async () => {
        held = await sendAndHold(join(dir, 'b.sock'), 'part');
        throw new Error('migration failed: QEMU is gone');
      }),
      /QEMU is gone/,
    );
    held?.destroy();
    await new Promise((r) => setTimeout(r, 100)); // the cut stream's rejection would surface by now
    assert.deepEqual(unhandled, [], 'no unhandled rejection (it ends a Node process)');
  } finally {
    process.off('unhandledRejection', onUnhandled);
    rmSync(dir, { recursive: true, force: true });
  }
});
