// World devnet numbers (issue 18): a developer on a laptop behind NAT, reaching a node only at its
// public address, everything through the real `form` CLI in the laptop namespace.
//   net.world_up_ms.n2               `form devnet up` (world) of 2 nodes: namespaces, visitor, laptop, daemons converged
//   net.laptop_join_ms               `form formnet up` wall time on the laptop (signed join over TLS, wireguard-go, resolver)
//   net.laptop_first_reply_ms        from `formnet up` returning to the first HTTP answer of the instance over formnet
//   net.laptop_http_rtt_ms.p50/.p99  HTTP GET laptop -> instance:8080 over formnet (curl time_total, 30 requests)
//   net.laptop_ssh_handshake_ms.p50  plain OpenSSH `true` laptop -> instance over formnet (connect+auth+exit, 5 runs)
//   net.laptop_upload_mbit           32 MiB laptop -> instance over ssh over formnet (WireGuard + ssh crypto; TCG guest)
// Needs root, wireguard-go, QEMU, sshpass, curl (skipped with a note otherwise).
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sshArgv } from '@formation/interface/testing';
import { devnetDown, devnetUp } from '@formation/node';
import { report } from '../report.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FORM = join(ROOT, 'packages/cli/bin/form.js');

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

export async function worldBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'form-bench-world-'));
  const lap = 'fbwlap';
  const laptop = async (args: string[], timeoutMs = 600_000): Promise<string> =>
    (
      await run(process.execPath, [FORM, 'devnet', 'exec', '--dir', dir, 'laptop', '--', ...args], {
        cwd: ROOT,
        timeout: timeoutMs,
        maxBuffer: 16 << 20,
      })
    ).stdout;
  try {
    const t0 = performance.now();
    const s = await devnetUp({ nodes: 2, dir, prefix: 'fbw', world: true, env: { FORM_LOG_LEVEL: 'warn' } });
    report('net.world_up_ms.n2', performance.now() - t0, 'ms', { nodes: 2 });
    await laptop(['form', 'kit', 'init', '--yes', '--node', `https://${s.nodes[0]?.publicAddress}`]);
    const ship = JSON.parse(
      await laptop(['form', 'pack', 'ship', 'examples/hello-server', '--replicas', '1', '--json']),
    ) as { id: string };
    let ip = '';
    for (let i = 0; i < 300 && !ip; i++) {
      const st = JSON.parse(await laptop(['form', 'manage', 'get', 'status', ship.id, '--json'])) as {
        status: string;
        replicas: Array<{ state: string; formnetIp: string | null }>;
      };
      ip = (st.status === 'SUCCESS' && st.replicas.find((r) => r.state === 'running')?.formnetIp) || '';
      if (!ip) await new Promise((r) => setTimeout(r, 2000));
    }
    if (!ip) throw new Error('the instance never reached SUCCESS');
    const tj = performance.now();
    await laptop(['form', 'formnet', 'up', '--json'], 120_000);
    const joinMs = performance.now() - tj;
    report('net.laptop_join_ms', joinMs, 'ms', {
      note: 'form formnet up, laptop behind NAT, node at its public address',
    });
    const tf = performance.now();
    for (;;) {
      try {
        await run('ip', ['netns', 'exec', lap, 'curl', '-sS', '--max-time', '2', `http://${ip}:8080/`]);
        break;
      } catch {
        if (performance.now() - tf > 60_000) throw new Error('no HTTP answer over formnet');
      }
    }
    report('net.laptop_first_reply_ms', performance.now() - tf, 'ms', { note: 'after formnet up returned' });
    const rtt: number[] = [];
    for (let i = 0; i < 30; i++) {
      const out = (
        await run('ip', [
          'netns',
          'exec',
          lap,
          'curl',
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{time_total}',
          `http://${ip}:8080/`,
        ])
      ).stdout;
      rtt.push(Number(out) * 1000);
    }
    report('net.laptop_http_rtt_ms.p50', pct(rtt, 50), 'ms', { requests: rtt.length, guest: 'TCG' });
    report('net.laptop_http_rtt_ms.p99', pct(rtt, 99), 'ms', { requests: rtt.length });
    const hs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await run('ip', ['netns', 'exec', lap, ...sshArgv(ip, 'true')], { timeout: 60_000 });
      hs.push(performance.now() - t);
    }
    report('net.laptop_ssh_handshake_ms.p50', pct(hs, 50), 'ms', { runs: hs.length, note: 'ssh connect+auth+exit' });
    const bytes = 32 << 20;
    const tu = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', lap, ...sshArgv(ip, 'cat > /dev/null')], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ssh upload exited ${code}`))));
      const chunk = Buffer.alloc(1 << 20, 7);
      let sent = 0;
      const pump = () => {
        while (sent < bytes) {
          sent += chunk.length;
          if (!child.stdin.write(chunk)) return void child.stdin.once('drain', pump);
        }
        child.stdin.end();
      };
      pump();
    });
    const secs = (performance.now() - tu) / 1000;
    report('net.laptop_upload_mbit', (bytes * 8) / 1e6 / secs, 'Mbit/s', {
      bytes,
      note: 'ssh cat > /dev/null over formnet; TCG guest decrypts ssh, so this is a floor',
    });
    await laptop(['form', 'formnet', 'down'], 60_000).catch(() => undefined);
  } finally {
    await devnetDown(dir).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
