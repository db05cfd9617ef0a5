import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { FormError, formHome } from '@formation/interface';
import pc from 'picocolors';
import { printJson } from '../output.ts';

const defaultDir = () => process.env.FORM_DEVNET_DIR ?? join(formHome(), 'devnet');

export async function up(opts: {
  nodes: string;
  dir?: string;
  prefix: string;
  portBase: string;
  timeout: string;
  json?: boolean;
}): Promise<number> {
  const nodes = Number(opts.nodes);
  const t0 = Date.now();
  if (!opts.json) process.stdout.write(`starting a ${nodes}-node devnet…\n`);
  const env: Record<string, string> = {};
  for (const k of ['FORM_HEARTBEAT_MS', 'FORM_NODE_TIMEOUT_MS', 'FORM_LOG_LEVEL', 'FORM_PACK_CACHE']) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  const { devnetUp } = await import('@formation/node');
  const s = await devnetUp({
    nodes,
    dir: opts.dir ?? defaultDir(),
    prefix: opts.prefix,
    portBase: Number(opts.portBase),
    timeoutMs: Number(opts.timeout) * 1000,
    env,
  });
  const seconds = Number(((Date.now() - t0) / 1000).toFixed(1));
  const rows = s.nodes.map((n) => ({
    name: n.name,
    netns: n.netns,
    pid: n.pid,
    portOffset: n.portOffset,
    apiBase: n.apiBase,
    apis: {
      formnet: `${n.apiBase}:${3001 + n.portOffset}`,
      vmm: `${n.apiBase}:${3002 + n.portOffset}`,
      pack: `${n.apiBase}:${3003 + n.portOffset}`,
      state: `${n.apiBase}:${3004 + n.portOffset}`,
    },
    underlayIp: n.underlayIp,
    instanceCidr: n.instanceCidr,
    nodeAddress: n.info?.nodeAddress ?? null,
    formnetAddress: n.info?.formnetAddress ?? null,
  }));
  if (opts.json) {
    printJson({ ok: true, dir: s.dir, seconds, nodes: rows });
    return 0;
  }
  process.stdout.write(`${pc.green(`devnet of ${nodes} nodes up in ${seconds} s`)} (${s.dir})\n`);
  for (const r of rows) {
    process.stdout.write(
      `  ${r.name.padEnd(7)} netns ${r.netns.padEnd(8)} FORM_PORT_OFFSET=${String(r.portOffset).padEnd(5)} formnet ${r.formnetAddress}  underlay ${r.underlayIp}\n`,
    );
  }
  process.stdout.write('Target a node with FORM_PORT_OFFSET=<offset> form …; stop with `form devnet down`.\n');
  return 0;
}

export async function down(opts: { dir?: string }): Promise<number> {
  const dir = opts.dir ?? defaultDir();
  const { devnetDown } = await import('@formation/node');
  const r = await devnetDown(dir);
  process.stdout.write(
    `devnet down: ${r.stopped} node(s) stopped, namespaces removed: ${r.namespaces.join(' ') || 'none'}\n`,
  );
  return 0;
}

export async function status(opts: { dir?: string; json?: boolean }): Promise<number> {
  const dir = opts.dir ?? defaultDir();
  const { devnetStatus } = await import('@formation/node');
  const rows = await devnetStatus(dir);
  if (!rows) {
    if (opts.json) printJson({ running: false, nodes: [] });
    else process.stdout.write(`no devnet in ${dir} (start one with \`form devnet up\`)\n`);
    return 1;
  }
  const digests = new Set(rows.filter((r) => r.digest).map((r) => r.digest));
  const converged = digests.size === 1 && rows.every((r) => r.digest);
  if (opts.json) {
    printJson({ running: rows.some((r) => r.running), converged, nodes: rows });
    return 0;
  }
  for (const r of rows) {
    process.stdout.write(
      `${r.running ? pc.green('up  ') : pc.red('down')} ${r.name.padEnd(7)} netns ${r.netns.padEnd(8)} offset ${String(r.portOffset).padEnd(5)} formnet ${r.formnetAddress ?? '-'}  ops ${r.ops ?? '-'}  digest ${r.digest?.slice(0, 12) ?? '-'}\n`,
    );
  }
  process.stdout.write(converged ? 'state: converged (same digest everywhere)\n' : 'state: not converged\n');
  return 0;
}

export async function exec(node: string, cmd: string[], opts: { dir?: string }): Promise<number> {
  const { readDevnet } = await import('@formation/node');
  const s = readDevnet(opts.dir ?? defaultDir());
  if (!s)
    throw new FormError('NOT_FOUND', 'Cannot exec: no devnet is running', { hint: 'Start one with `form devnet up`.' });
  const n = s.nodes.find((x) => x.name === node || String(x.index) === node || `n${x.index}` === node);
  if (!n)
    throw new FormError('NOT_FOUND', `Cannot exec: no node ${node} (have ${s.nodes.map((x) => x.name).join(', ')})`);
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', n.netns, ...cmd], { stdio: 'inherit' });
    child.on('close', (code) => resolve(code ?? 1));
    child.on('error', () => resolve(127));
  });
}
