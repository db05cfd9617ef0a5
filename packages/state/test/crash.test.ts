import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { openStateStore } from '../src/index.ts';
import { randomHistory } from './generate.ts';
import { memStore } from './helpers.ts';

const writer = new URL('./fixtures/crash-writer.ts', import.meta.url).pathname;

/** Run the writer, SIGKILL it after `killAfter` acknowledged batches; return the acknowledged hashes. */
function runAndKill(db: string, opsFile: string, batch: number, killAfter: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writer, db, opsFile, String(batch)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: string[] = [];
    let buf = '';
    let acks = 0;
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('ack ')) {
          acked.push(...line.slice(4).split(',').filter(Boolean));
          if (++acks === killAfter) child.kill('SIGKILL');
        }
        nl = buf.indexOf('\n');
      }
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer ended before the kill (code ${code}): ${stderr}`));
      else resolve(acked);
    });
  });
}

for (const batch of [1, 20]) {
  test(`crash safety: SIGKILL mid-stream (batches of ${batch}) loses no acknowledged op, leaves no partial batch`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'formation-state-crash-'));
    try {
      const { ops } = randomHistory(31, 400);
      const opsFile = join(dir, 'ops.json');
      writeFileSync(opsFile, JSON.stringify(ops));
      const db = join(dir, 'state.db');
      const acked = await runAndKill(db, opsFile, batch, batch === 1 ? 120 : 8);
      assert.ok(acked.length >= (batch === 1 ? 120 : 160));

      const check = new DatabaseSync(db);
      assert.equal(
        (check.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check,
        'ok',
      );
      check.close();

      const store = openStateStore({ path: db });
      for (const h of acked) assert.ok(store.has(h), `acknowledged op ${h} survived`);
      assert.equal(store.countOnDisk(), store.size);
      assert.ok(store.size < ops.length, 'the writer was killed before the end');
      assert.equal(store.size % batch, 0, 'batches are atomic');
      // what is on disk is a prefix of whole, valid ops: a fresh replica re-verifies all and agrees
      const fresh = memStore();
      const r = fresh.applyBatch(store.opsSince([], 10_000));
      assert.deepEqual(r.rejected, []);
      assert.equal(fresh.size, store.size);
      assert.equal(fresh.digest(), store.digest());
      // and the store keeps working after the crash
      const rest = store.applyBatch(ops);
      assert.deepEqual(rest.rejected, []);
      assert.equal(store.size, ops.length);
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
