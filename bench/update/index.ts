// Rolling update bench on a real 2-node devnet (formationd processes, QEMU VMs — TCG without KVM), an
// instance of hello-server with 2 replicas and an HTTP HEALTHCHECK (issue 20):
//   update.ship_to_healthy_s           first ship (build included) until both replicas run release 1 healthy
//   update.good_total_s                ship of a changed version (built before) until every replica runs it healthy
//   update.good_replica_<n>_s          ... until the n-th replica (in the order they came up) runs it healthy
//   update.good_per_replica_s          good_total_s / replicas
//   update.good_failed_requests        failed requests of an HTTP loop (one every ~100 ms, to replicas state lists
//                                      as running and healthy, as the ingress does) during the good update
//   update.rollback_decided_s          ship of a crashing version until its release is recorded rolled-back
//   update.rollback_total_s            ... until both replicas run the previous release healthy again
//   update.rollback_failed_requests    failed requests of the same loop during the bad update and rollback
// A separate suite from `deploy` (one `form node up`, no formnet between nodes): this one needs a devnet.
// Reuses the rolling update test's pieces (packages/cli/test/rolling.ts). Needs root, qemu, wireguard-go, curl.
// Prefix `fdb`, port base 5200 (FORM_BENCH_UPDATE_PREFIX, FORM_BENCH_UPDATE_PORT_BASE to move them).
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { until } from '@formation/interface/testing';
import { type DevnetNode, devnetDown, devnetUp } from '@formation/node';
import {
  availableOn,
  clientLoop,
  type LoopResult,
  type Releases,
  ROLLING_NODE_ENV,
  type Status,
  variant,
} from '../../packages/cli/test/rolling.ts';
import { report } from '../report.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const formBin = join(root, 'packages/cli/bin/form.js');
const REPLICAS = 2;
// `fdb1`/`fdb2` are also public-tls.test.ts's namespaces (it deletes them): never run both at once, or move the prefix.
const PREFIX = process.env.FORM_BENCH_UPDATE_PREFIX ?? 'fdb';
const PORT_BASE = Number(process.env.FORM_BENCH_UPDATE_PORT_BASE ?? 5200);
const LIMIT_MS = 900_000;

const missing = ['qemu-system-x86_64', 'wireguard-go', 'curl'].filter((p) => {
  try {
    execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});
if (process.getuid?.() !== 0 || missing.length) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'update', skipped: process.getuid?.() !== 0 ? 'needs root' : `missing ${missing.join(', ')}` })}\n`,
  );
  process.exit(0);
}

const home = mkdtempSync(join(tmpdir(), 'form-bench-update-'));
const dir = mkdtempSync(join(tmpdir(), 'form-bench-update-devnet-'));
const work = mkdtempSync(join(tmpdir(), 'form-bench-update-src-'));
let node1: DevnetNode | undefined;
let id = '';

async function form(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [formBin, ...args], {
    env: { ...process.env, FORM_HOME: home, FORM_PORT_OFFSET: String(node1?.portOffset ?? 0), NO_COLOR: '1' },
    maxBuffer: 16 * 2 ** 20,
  });
  return stdout;
}
const status = async () => JSON.parse(await form(['manage', 'get', 'status', id, '--json'])) as Status;
const releases = async () => JSON.parse(await form(['manage', 'releases', id, '--json'])) as Releases;
const loop = clientLoop(status, () => node1?.netns as string);
const requests = (r: LoopResult) => ({
  ok: r.ok,
  answers: r.answers,
  failedRatio: r.ok + r.failed ? Math.round((r.failed / (r.ok + r.failed)) * 1000) / 1000 : 0,
  firstErrors: r.errors.slice(0, 3),
});
const load = () => Math.round((loadavg()[0] ?? 0) * 100) / 100;

try {
  const s = await devnetUp({
    nodes: 2,
    dir,
    prefix: PREFIX,
    portBase: PORT_BASE,
    env: { ...ROLLING_NODE_ENV, FORM_LOG_LEVEL: 'silent' },
  });
  node1 = s.nodes[0] as DevnetNode;
  await form(['kit', 'init', '--yes']);

  // Release 1 on both nodes, healthy.
  const t1 = Date.now();
  id = (
    JSON.parse(await form(['pack', 'ship', variant(work, '1'), '--replicas', String(REPLICAS), '--json'])) as {
      id: string;
    }
  ).id;
  await until(
    'both replicas of release 1 running and healthy',
    async () => availableOn(await status(), 1).length === REPLICAS,
    LIMIT_MS,
    500,
  );
  report('update.ship_to_healthy_s', (Date.now() - t1) / 1000, 's', { replicas: REPLICAS, load1: load() });

  // Release 2 (built before, not timed), rolled out one replica at a time while the client loop runs.
  const v2 = variant(work, '2');
  await form(['pack', 'build', v2]);
  loop.start();
  const t2 = Date.now();
  const ship2 = JSON.parse(await form(['pack', 'ship', v2, '--json'])) as { release: number };
  const healthyAt = new Map<string, number>(); // node -> first time its replica ran release 2 healthy
  await until(
    'release 2 current and healthy on every replica',
    async () => {
      const st = await status();
      for (const r of availableOn(st, ship2.release)) if (!healthyAt.has(r.node)) healthyAt.set(r.node, Date.now());
      const rel = await releases();
      return healthyAt.size === REPLICAS && rel.releases[ship2.release - 1]?.result === 'current';
    },
    LIMIT_MS,
    500,
  );
  const goodMs = Date.now() - t2;
  const good = await loop.stop();
  const order = [...healthyAt.entries()].sort((a, b) => a[1] - b[1]);
  order.forEach(([node, at], i) => {
    report(`update.good_replica_${i + 1}_s`, (at - t2) / 1000, 's', {
      node,
      sincePrevious: (at - (i ? (order[i - 1] as [string, number])[1] : t2)) / 1000,
    });
  });
  report('update.good_total_s', goodMs / 1000, 's', { replicas: REPLICAS, load1: load() });
  report('update.good_per_replica_s', goodMs / 1000 / REPLICAS, 's');
  report('update.good_failed_requests', good.failed, 'requests', requests(good));

  // Release 3 crashes: its first replica fails and the nodes roll back to release 2 by themselves.
  const v3 = variant(work, '3', true);
  await form(['pack', 'build', v3]);
  loop.start();
  const t3 = Date.now();
  const ship3 = JSON.parse(await form(['pack', 'ship', v3, '--json'])) as { release: number };
  let decidedAt = 0;
  await until(
    'the crashing release rolled back, every replica on the previous release healthy again',
    async () => {
      const rel = await releases();
      if (rel.releases[ship3.release - 1]?.result === 'rolled-back' && !decidedAt) decidedAt = Date.now();
      return (
        decidedAt && rel.release === ship2.release && availableOn(await status(), ship2.release).length === REPLICAS
      );
    },
    LIMIT_MS,
    500,
  );
  const rollbackMs = Date.now() - t3;
  const bad = await loop.stop();
  const failure = (await releases()).releases[ship3.release - 1]?.failure ?? null;
  report('update.rollback_decided_s', (decidedAt - t3) / 1000, 's', { failure });
  report('update.rollback_total_s', rollbackMs / 1000, 's', { load1: load() });
  report('update.rollback_failed_requests', bad.failed, 'requests', requests(bad));
} finally {
  loop.on = false;
  await loop.done.catch(() => undefined);
  await devnetDown(dir).catch((err: unknown) => process.stderr.write(`devnet down: ${String(err)}\n`));
  if (process.env.FORM_KEEP_BENCH_DATA !== '1')
    for (const d of [dir, home, work]) rmSync(d, { recursive: true, force: true });
}
