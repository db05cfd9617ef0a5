// State bench: ops verified + applied + persisted per second, 10k-op backlog merge into a fresh
// replica, and bytes per op on disk. One JSON line per metric (see bench/report.ts).
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { generateWireGuardKeyPair, keyPairFromPrivate, verify } from '@formation/identity';
import { createOp, encodeOp, instanceIdOf, type Op, openStateStore, verifyOpSignature } from '@formation/state';
import { report } from '../report.ts';

const key = (i: number) => keyPairFromPrivate((i + 1).toString(16).padStart(64, '0'));
const nodes = Array.from({ length: 10 }, (_, i) => key(100 + i));
const devs = Array.from({ length: 5 }, (_, i) => key(200 + i));
const wg = generateWireGuardKeyPair().publicKey;

/** A realistic mix: registrations, then mostly heartbeats and instance status, some instance churn. */
function history(count: number): Op[] {
  const ops: Op[] = [];
  let heads: string[] = [];
  const push = (op: Op) => {
    ops.push(op);
    heads = [...heads.filter((h) => !op.deps.includes(h)), op.hash].slice(-3);
  };
  let ts = 1_700_000_000_000;
  for (const [i, n] of nodes.entries()) {
    push(
      createOp(
        n,
        'node.register',
        {
          capacity: { vcpu: 8, memMiB: 16384, diskGiB: 200 },
          endpoint: `10.0.0.${i}:3005`,
          p2pPeerId: `12D3Koo${i}`,
          wgPublicKey: wg,
          formnetRange: `10.129.${i}.0/24`, // node slices lie outside the member pool 10.128/16
        },
        heads,
        ts++,
      ),
    );
  }
  const instances: Array<{ id: string; create: string }> = [];
  while (ops.length < count) {
    const x = ops.length % 10;
    const n = nodes[ops.length % nodes.length]!;
    if (x === 0 || instances.length === 0) {
      const d = devs[ops.length % devs.length]!;
      const name = `app${ops.length}`;
      const t = ts++;
      const op = createOp(
        d,
        'instance.create',
        {
          id: instanceIdOf(d.publicKey, name, t),
          formpackId: 'ab'.repeat(32),
          name,
          replicas: 1,
          resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
        },
        heads,
        t,
      );
      push(op);
      instances.push({ id: op.body.id as string, create: op.hash });
    } else if (x < 5) {
      push(
        createOp(n, 'node.heartbeat', { status: 'healthy', used: { vcpu: 1, memMiB: 512, diskGiB: 5 } }, heads, ts++),
      );
    } else {
      const inst = instances[ops.length % instances.length]!;
      push(
        createOp(
          n,
          'instance.status',
          { instanceId: inst.id, node: n.publicKey, state: 'running', formnetIp: '10.129.0.9', revision: 1 },
          heads,
          ts++,
        ),
      );
    }
  }
  return ops;
}

const dir = mkdtempSync('/var/tmp/formation-bench-state-');
try {
  const ops = history(10_000);
  const avgBytes = ops.reduce((a, o) => a + Buffer.byteLength(encodeOp(o)) + 128, 0) / ops.length;

  // Baselines in this process: raw signature checks.
  const sample = ops.slice(0, 1000).map((o) => ({ o, bytes: encodeOp(o) }));
  let t0 = performance.now();
  for (const { o, bytes } of sample) verifyOpSignature(o.author, bytes, o.sig);
  const fastVerify = sample.length / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (const { o, bytes } of sample.slice(0, 300)) verify(o.author, bytes, o.sig);
  const nobleVerify = 300 / ((performance.now() - t0) / 1000);
  report('state.baseline_verify_openssl', fastVerify, 'verifies/s');
  report('state.baseline_verify_noble', nobleVerify, 'verifies/s');

  // 1. Throughput: verify + apply + persist, on disk, fsync on commit.
  for (const [batch, n] of [
    [100, 10_000],
    [1, 2_000],
  ] as const) {
    const s = openStateStore({ path: join(dir, `tput-${batch}.db`) });
    const input = ops.slice(0, n).map((o) => JSON.parse(JSON.stringify(o)));
    t0 = performance.now();
    for (let i = 0; i < input.length; i += batch) s.applyBatch(input.slice(i, i + batch));
    const secs = (performance.now() - t0) / 1000;
    if (s.size !== n) throw new Error(`only ${s.size} of ${n} accepted`);
    report(`state.ops_per_sec_batch${batch}`, n / secs, 'ops/s', {
      ops: n,
      durability: 'full',
      vsVerifyOnly: Math.round((n / secs / fastVerify) * 100) / 100,
    });
    if (batch === 100) {
      // 3. bytes per op on disk (after checkpointing the WAL into the main file)
      s.close();
      const s2 = openStateStore({ path: join(dir, 'tput-100.db') });
      s2.close();
      const { DatabaseSync } = await import('node:sqlite');
      const db = new DatabaseSync(join(dir, 'tput-100.db'));
      db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      db.close();
      const size = statSync(join(dir, 'tput-100.db')).size;
      report('state.bytes_per_op_disk', size / n, 'bytes', { avgOpWireBytes: Math.round(avgBytes) });
    } else s.close();
  }

  // 2. 10k-op backlog merged into a fresh replica via the sync primitives (pages of 1000), with the
  // signature checks on worker threads (default) and inline (baseline).
  const src = openStateStore({ path: join(dir, 'tput-100.db') });
  for (const threads of [undefined, 0]) {
    const name = threads === 0 ? 'fresh-inline.db' : 'fresh.db';
    const dst = openStateStore({ path: join(dir, name), ...(threads === 0 ? { verifyThreads: 0 } : {}) });
    t0 = performance.now();
    let pages = 0;
    for (;;) {
      const page = src.opsSince(dst.heads(), 1000);
      const wire = JSON.parse(JSON.stringify(page)); // as received from the network
      dst.applyBatch(wire);
      pages++;
      if (page.length < 1000) break;
    }
    const mergeMs = performance.now() - t0;
    if (dst.digest() !== src.digest() || dst.size !== src.size) throw new Error('replicas did not converge');
    report(threads === 0 ? 'state.merge_10k_ms_inline_verify' : 'state.merge_10k_ms', mergeMs, 'ms', {
      ops: dst.size,
      pages,
      target: '<= 5000',
    });
    dst.close();
  }

  // Reopen cost: rebuilding the in-memory index and views from 10k ops on disk.
  t0 = performance.now();
  const re = openStateStore({ path: join(dir, 'fresh.db') });
  re.digest();
  report('state.reopen_10k_ms', performance.now() - t0, 'ms');
  re.close();
  src.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
