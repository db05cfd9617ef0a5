// Deploy bench: ship -> SUCCESS and ship -> first HTTP 200 (Formpack already built, instance cold),
// `form commit` time, and the node daemon's idle memory. Uses its own FORM_HOME, port offset and netns.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { report } from '../report.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'form-bench-deploy-'));
const ns = `fbd${randomBytes(3).toString('hex')}`;
const env = { ...process.env, FORM_HOME: home, FORM_PORT_OFFSET: '70', FORM_LOG_LEVEL: 'silent' };
const example = join(root, 'examples/hello-server');

function form(args: string[], extra: Record<string, string> = {}): string {
  const r = spawnSync(process.execPath, [join(root, 'packages/cli/bin/form.js'), ...args], {
    env: { ...env, ...extra },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`form ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

try {
  if (process.getuid?.() !== 0) throw new Error('the deploy bench needs root (namespaces, TAP, WireGuard)');
  form(['kit', 'init', '--yes']);
  const t0 = Date.now();
  form(['node', 'up', '--netns', ns]);
  report('deploy.node_up', (Date.now() - t0) / 1000, 's');
  form(['pack', 'build', example]); // not timed: the Formpack is built before shipping

  const ship0 = Date.now();
  const id = (JSON.parse(form(['pack', 'ship', example, '--json'])) as { id: string }).id;
  let ip = '';
  let successAt = 0;
  while (Date.now() - ship0 < 300_000) {
    const s = JSON.parse(form(['manage', 'get', 'status', id, '--json'])) as {
      status: string;
      replicas: Array<{ formnetIp: string | null }>;
    };
    if (s.status === 'SUCCESS') {
      successAt = Date.now();
      ip = s.replicas[0]?.formnetIp ?? '';
      break;
    }
    if (s.status === 'FAILURE') throw new Error(`deployment failed: ${JSON.stringify(s)}`);
    await sleep(100);
  }
  if (!successAt) throw new Error('no SUCCESS within 300 s');
  report('deploy.ship_to_success', (successAt - ship0) / 1000, 's', { target: 20 });
  let httpAt = 0;
  while (Date.now() - ship0 < 300_000) {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'curl', '-fsS', '-m', '2', `http://${ip}:8080/`], {
      encoding: 'utf8',
    });
    if (r.status === 0 && r.stdout.startsWith('Hello')) {
      httpAt = Date.now();
      break;
    }
    await sleep(100);
  }
  report('deploy.ship_to_http_200', (httpAt - ship0) / 1000, 's', { target: 20, stretch: 5 });

  const c0 = Date.now();
  const c = JSON.parse(form(['commit', id, '--json'])) as { frozenMs: number; bytes: number };
  report('deploy.commit', (Date.now() - c0) / 1000, 's', { guestFrozenMs: c.frozenMs, revisionBytes: c.bytes });

  await sleep(5000);
  const pid = Number(readFileSync(join(home, 'node', 'formationd.pid'), 'utf8').trim());
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  report('deploy.daemon_idle_rss', rss, 'MiB');
  const accel = (JSON.parse(readFileSync(join(home, 'node', 'node.json'), 'utf8')) as { accel: string }).accel;
  report('deploy.accelerator_is_kvm', accel === 'kvm' ? 1 : 0, 'bool', { accel });
} finally {
  spawnSync(process.execPath, [join(root, 'packages/cli/bin/form.js'), 'node', 'down'], { env });
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
}
