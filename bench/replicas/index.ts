// Replicas bench on a real 4-node devnet (formationd processes, QEMU VMs — TCG without KVM):
//   replicas.ship_to_success_ms      `form pack ship --replicas 3` until 3 replicas run (SUCCESS), Formpack already built on node 1
//   replicas.commit_propagation_ms   `form commit` of a 10 MiB change on one replica until every replica reports the revision
//   replicas.heal_ms                 a replica's node dies (SIGKILL + underlay down) until a replica runs on the spare node
//                                    (includes the node timeout, FORM_NODE_TIMEOUT_MS = 5000 here)
// Needs root, qemu, wireguard-go, sshpass (skipped with a note otherwise).
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sshArgv, until } from '@formation/interface/testing';
import { type DevnetNode, devnetDown, devnetUp, setUnderlayLink, stopDevnetNode } from '@formation/node';
import { report } from '../report.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const form = join(root, 'packages/cli/bin/form.js');
const example = join(root, 'examples/hello-server');
const NODE_TIMEOUT_MS = 5000;

const missing = ['qemu-system-x86_64', 'wireguard-go', 'sshpass'].filter((p) => {
  try {
    execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'ignore' });
    return false;
  } catch {
    return true;
  }
});
if (process.getuid?.() !== 0 || missing.length) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'replicas', skipped: process.getuid?.() !== 0 ? 'needs root' : `missing ${missing.join(', ')}` })}\n`,
  );
  process.exit(0);
}

interface Replica {
  node: string;
  state: string;
  formnetIp: string | null;
  revision: number;
}

const home = mkdtempSync(join(tmpdir(), 'form-bench-replicas-'));
const dir = mkdtempSync(join(tmpdir(), 'form-bench-replicas-devnet-'));

async function cli(args: string[], n: DevnetNode): Promise<string> {
  const { stdout } = await run(process.execPath, [form, ...args], {
    env: { ...process.env, FORM_HOME: home, FORM_PORT_OFFSET: String(n.portOffset), NO_COLOR: '1' },
    maxBuffer: 16 * 2 ** 20,
  });
  return stdout;
}

const ssh = (netns: string, ip: string, script: string) => run('ip', ['netns', 'exec', netns, ...sshArgv(ip, script)]);

try {
  const s = await devnetUp({
    nodes: 4,
    dir,
    prefix: 'fbr',
    portBase: Number(process.env.FORM_BENCH_REPLICAS_PORT_BASE ?? 800),
    env: { FORM_HEARTBEAT_MS: '1000', FORM_NODE_TIMEOUT_MS: String(NODE_TIMEOUT_MS), FORM_LOG_LEVEL: 'warn' },
  });
  const n1 = s.nodes[0] as DevnetNode;
  await cli(['kit', 'init', '--yes'], n1);
  await cli(['pack', 'build', example], n1);
  const byAddr = new Map(s.nodes.map((n) => [n.info?.nodeAddress as string, n]));
  let t0 = performance.now();
  const id = (JSON.parse(await cli(['pack', 'ship', example, '--replicas', '3', '--json'], n1)) as { id: string }).id;
  const status = async () =>
    JSON.parse(await cli(['manage', 'get', 'status', id, '--json'], n1)) as { status: string; replicas: Replica[] };
  const running = (r: Replica[]) => r.filter((x) => x.state === 'running' && x.formnetIp);
  await until('ship to SUCCESS', async () => (await status()).status === 'SUCCESS', 600_000, 500);
  report('replicas.ship_to_success_ms', performance.now() - t0, 'ms', { replicas: 3, nodes: 4 });

  const reps = running((await status()).replicas);
  const first = reps[0] as Replica;
  const host = byAddr.get(first.node) as DevnetNode;
  await ssh(host.netns, first.formnetIp as string, 'head -c 10485760 /dev/urandom > ~/blob.bin && sync');
  t0 = performance.now();
  const commit = JSON.parse(await cli(['commit', first.formnetIp as string, '--json'], host)) as {
    revision: number;
    bytes: number;
  };
  await until(
    'commit propagation',
    async () => {
      const r = running((await status()).replicas);
      return r.length === 3 && r.every((x) => x.revision === commit.revision);
    },
    600_000,
    500,
  );
  report('replicas.commit_propagation_ms', performance.now() - t0, 'ms', {
    change: '10 MiB',
    revisionBytes: commit.bytes,
    note: 'includes stop + overlay swap + boot of 2 replicas',
  });

  const used = new Set(reps.map((r) => r.node));
  const spare = s.nodes.find((n) => !used.has(n.info?.nodeAddress as string)) as DevnetNode;
  const victim = s.nodes.find((n) => n !== n1 && used.has(n.info?.nodeAddress as string)) as DevnetNode;
  t0 = performance.now();
  await stopDevnetNode(s, victim, 10_000, { crash: true });
  await setUnderlayLink(s, victim, false);
  await until(
    'heal',
    async () => running((await status()).replicas).some((r) => r.node === spare.info?.nodeAddress),
    600_000,
    500,
  );
  report('replicas.heal_ms', performance.now() - t0, 'ms', { nodeTimeoutMs: NODE_TIMEOUT_MS });
} finally {
  await devnetDown(dir).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
}
