// Devnet numbers: real formationd processes in namespaces (`form devnet up`), not in-process hosts.
//   net.devnet_up_ms.nN           bring-up of an N-node devnet: namespaces, N daemons, all registered everywhere
//   net.devnet_op_all_nodes_ms.nN  an op posted at node 1 until every node's state API has it (p50/p99)
//   net.idle_ops_per_node_hour.n3  state ops an idle node adds to the log per hour (liveness is gossiped
//                                  presence, not ops), and how fresh node 1 sees every node's liveness
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@formation/identity';
import { devnetDown, devnetUp, serviceBase } from '@formation/node';
import { createOp } from '@formation/state';
import { report } from '../report.ts';

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

export async function devnetBench(n: number, ops: number, portBase: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), `form-bench-devnet${n}-`));
  try {
    const t0 = performance.now();
    const s = await devnetUp({ nodes: n, dir, prefix: `fbd${n}`, portBase, env: { FORM_LOG_LEVEL: 'warn' } });
    report(`net.devnet_up_ms.n${n}`, performance.now() - t0, 'ms', { nodes: n });
    const first = s.nodes[0];
    if (!first) return;
    const lat: number[] = [];
    for (let k = 0; k < ops; k++) {
      const key = generateKeyPair();
      const heads = ((await (await fetch(`${serviceBase(first, 'state')}/heads`)).json()) as { heads: string[] }).heads;
      const op = createOp(key, 'account.update', { name: `b${k}` }, heads);
      const t = performance.now();
      const r = await fetch(`${serviceBase(first, 'state')}/ops`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(op),
      });
      await r.body?.cancel();
      const pending = new Set(s.nodes.slice(1));
      const end = Date.now() + 10_000;
      while (pending.size > 0 && Date.now() < end) {
        for (const node of [...pending]) {
          const g = await fetch(`${serviceBase(node, 'state')}/ops/${op.hash}`);
          await g.body?.cancel();
          if (g.status === 200) pending.delete(node);
        }
        if (pending.size) await new Promise((res) => setTimeout(res, 5));
      }
      if (pending.size) throw new Error(`op ${k} did not reach all ${n} devnet nodes in 10 s`);
      lat.push(performance.now() - t);
    }
    report(`net.devnet_op_all_nodes_ms.n${n}.p50`, pct(lat, 50), 'ms', { ops, note: 'polled over HTTP every 5 ms' });
    report(`net.devnet_op_all_nodes_ms.n${n}.p99`, pct(lat, 99), 'ms', { ops });
    if (n === 3) {
      const state = serviceBase(first, 'state');
      const count = async () =>
        (
          (await (
            await fetch(`${state}/sync`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ heads: [], limit: 10_000 }),
            })
          ).json()) as { ops: unknown[] }
        ).ops.length;
      const windowMs = 30_000;
      const before = await count();
      await new Promise((r) => setTimeout(r, windowMs));
      const after = await count();
      report('net.idle_ops_per_node_hour.n3', ((after - before) / n) * (3_600_000 / windowMs), 'ops', {
        window_s: windowMs / 1000,
        before_heartbeat_ops_per_node_hour: 720,
      });
      const nodes = (await (await fetch(`${state}/nodes`)).json()) as Array<{ heartbeat: { ts: number } | null }>;
      const ages = nodes.map((x) => (x.heartbeat ? Date.now() - x.heartbeat.ts : Number.POSITIVE_INFINITY));
      report('net.liveness_age_ms.n3.max', Math.max(...ages), 'ms', { note: 'presence every 5 s, seen at node 1' });
    }
  } finally {
    await devnetDown(dir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
