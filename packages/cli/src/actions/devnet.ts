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
  portBase?: string;
  timeout: string;
  local?: boolean;
  json?: boolean;
}): Promise<number> {
  const nodes = Number(opts.nodes);
  const world = !opts.local;
  if (world && opts.portBase !== undefined) {
    throw new FormError(
      'CLI_USAGE',
      'Cannot use --port-base in a world devnet: every host there uses the standard ports',
      {
        hint: 'Add --local for the single-host devnet with port offsets, or drop --port-base.',
      },
    );
  }
  const t0 = Date.now();
  if (!opts.json) process.stdout.write(`starting a ${nodes}-node ${world ? 'world' : 'local'} devnet…\n`);
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
    portBase: Number(opts.portBase ?? 1000),
    timeoutMs: Number(opts.timeout) * 1000,
    env,
    world,
  });
  const seconds = Number(((Date.now() - t0) / 1000).toFixed(1));
  if (opts.json) {
    const rows = s.nodes.map((n) => {
      // World: the APIs a laptop uses are the node's public TLS ones; local: this host's loopback + offset.
      const base = n.publicAddress ? `https://${n.publicAddress}` : n.apiBase;
      const port = (p: number) => p + n.portOffset;
      return {
        name: n.name,
        netns: n.netns,
        pid: n.pid,
        portOffset: n.portOffset,
        apiBase: n.apiBase,
        apis: {
          formnet: `${base}:${port(3001)}`,
          vmm: `${base}:${port(3002)}`,
          pack: `${base}:${port(3003)}`,
          state: `${base}:${port(3004)}`,
        },
        underlayIp: n.underlayIp,
        publicAddress: n.publicAddress ?? null,
        instanceCidr: n.instanceCidr,
        nodeAddress: n.info?.nodeAddress ?? null,
        formnetAddress: n.info?.formnetAddress ?? null,
      };
    });
    printJson({ ok: true, dir: s.dir, seconds, mode: s.mode, prefix: s.prefix, nodes: rows, world: s.world ?? null });
    return 0;
  }
  process.stdout.write(`${pc.green(`devnet of ${nodes} nodes up in ${seconds} s`)} (${s.dir})\n`);
  if (s.world) {
    const w = s.world;
    for (const n of s.nodes) {
      process.stdout.write(
        `  ${n.name.padEnd(7)} host ${n.netns.padEnd(8)} public ${String(n.publicAddress).padEnd(15)} formnet ${n.info?.formnetAddress ?? '-'}  instances ${n.instanceCidr}\n`,
      );
    }
    process.stdout.write(
      `  visitor host ${w.plan.visitor.netns.padEnd(8)} public ${w.plan.visitor.ip} (HTTP :${w.plan.visitor.port}, requests in ${w.visitorLog})\n` +
        `  laptop  host ${w.plan.laptop.netns.padEnd(8)} ${w.plan.laptop.ip} behind NAT (router ${w.plan.router.publicIp}), FORM_HOME ${w.laptopHome}\n`,
    );
    const first = s.nodes[0]?.publicAddress;
    const d = opts.dir ? ` --dir ${s.dir}` : '';
    process.stdout.write(
      '\nAct as the developer on the laptop (it reaches the nodes only at their public addresses):\n' +
        `  form devnet exec${d} laptop -- form kit init --node https://${first}\n` +
        `  form devnet exec${d} laptop -- form pack ship examples/hello-server --replicas 2\n` +
        `  form devnet exec${d} laptop -- form manage get status hello-server\n` +
        `  form devnet exec${d} laptop -- form formnet up\n` +
        `A node's own view: form devnet exec${d} node1 -- curl -s http://127.0.0.1:3004/nodes\n` +
        `Stop with \`form devnet down${d}\`.\n`,
    );
    return 0;
  }
  for (const n of s.nodes) {
    process.stdout.write(
      `  ${n.name.padEnd(7)} netns ${n.netns.padEnd(8)} FORM_PORT_OFFSET=${String(n.portOffset).padEnd(5)} formnet ${n.info?.formnetAddress ?? null}  underlay ${n.underlayIp}\n`,
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
    `devnet down: ${r.stopped} node(s) stopped, ${r.leftoverProcesses} leftover process(es) ended, namespaces removed: ${r.namespaces.join(' ') || 'none'}\n`,
  );
  return 0;
}

export async function status(opts: { dir?: string; json?: boolean }): Promise<number> {
  const dir = opts.dir ?? defaultDir();
  const { devnetStatus, devnetWorldStatus } = await import('@formation/node');
  const rows = await devnetStatus(dir);
  const world = rows ? await devnetWorldStatus(dir) : null;
  if (!rows) {
    if (opts.json) printJson({ running: false, nodes: [] });
    else process.stdout.write(`no devnet in ${dir} (start one with \`form devnet up\`)\n`);
    return 1;
  }
  const digests = new Set(rows.filter((r) => r.digest).map((r) => r.digest));
  const converged = digests.size === 1 && rows.every((r) => r.digest);
  if (opts.json) {
    printJson({ running: rows.some((r) => r.running), converged, nodes: rows, world });
    return 0;
  }
  for (const r of rows) {
    process.stdout.write(
      `${r.running ? pc.green('up  ') : pc.red('down')} ${r.name.padEnd(7)} netns ${r.netns.padEnd(8)} ${r.publicAddress ? `public ${r.publicAddress.padEnd(15)}` : `offset ${String(r.portOffset).padEnd(5)}`} formnet ${r.formnetAddress ?? '-'}  ops ${r.ops ?? '-'}  digest ${r.digest?.slice(0, 12) ?? '-'}\n`,
    );
  }
  if (world) {
    const v = world.visitor;
    const l = world.laptop;
    process.stdout.write(
      `${v.running ? pc.green('up  ') : pc.red('down')} visitor netns ${v.netns.padEnd(8)} public ${v.ip.padEnd(15)} ${v.requests} request(s) answered\n` +
        `     laptop  netns ${l.netns.padEnd(8)} lan    ${l.ip.padEnd(15)} interfaces ${l.interfaces.join(' ') || '-'}, ${l.processes} process(es), FORM_HOME ${l.formHome}\n`,
    );
  }
  process.stdout.write(converged ? 'state: converged (same digest everywhere)\n' : 'state: not converged\n');
  return 0;
}

export async function exec(target: string, cmd: string[], opts: { dir?: string }): Promise<number> {
  const { readDevnet, devnetExecTarget, devnetExecEnv } = await import('@formation/node');
  const dir = opts.dir ?? defaultDir();
  const s = readDevnet(dir);
  if (!s)
    throw new FormError('NOT_FOUND', `Cannot exec: no devnet in ${dir}`, { hint: 'Start one with `form devnet up`.' });
  if (cmd.length === 0)
    throw new FormError('CLI_USAGE', 'Cannot exec: no command given', {
      hint: 'form devnet exec laptop -- form kit init …',
    });
  const t = devnetExecTarget(s, target);
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', t.netns, ...cmd], {
      stdio: 'inherit',
      env: devnetExecEnv(t),
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    child.on('error', () => resolve(127));
  });
}
