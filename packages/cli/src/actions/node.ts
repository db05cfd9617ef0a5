import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { FormError, formHome } from '@formation/interface';
// Types only at load time: @formation/node/light pulls in the node's config schema (TypeBox, Fastify).
import type * as NodeLight from '@formation/node/light';
import pc from 'picocolors';
import { printJson } from '../output.ts';

interface UpOptions {
  netns?: string;
  portOffset?: string;
  join?: string[];
  advertiseHost?: string;
  publicAddress?: string;
  admin?: string[];
  open?: boolean;
  genesis?: string;
  timeout: string;
  json?: boolean;
}

export async function nodeUp(opts: UpOptions): Promise<number> {
  const { FORMATIOND_MAIN, nodePaths, pidAlive, readDaemon } = await import('@formation/node/light');
  const dataDir = formHome();
  const paths = nodePaths(dataDir);
  const current = await readDaemon(dataDir);
  if (current.running) {
    if (opts.json) printJson({ ok: true, alreadyRunning: true, ...current.info });
    else process.stdout.write(`formationd is already running (pid ${current.pid}); log: ${paths.logFile}\n`);
    return 0;
  }
  const timeoutS = Number(opts.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0)
    throw new FormError('CLI_USAGE', `Cannot use --timeout ${opts.timeout}: give seconds > 0`);
  await mkdir(paths.dir, { recursive: true });
  const log = await open(paths.logFile, 'a');
  const startOffset = (await log.stat()).size;
  const args = [FORMATIOND_MAIN, '--data-dir', dataDir];
  if (opts.netns) args.push('--netns', opts.netns);
  if (opts.portOffset) args.push('--port-offset', opts.portOffset);
  if (opts.advertiseHost) args.push('--advertise-host', opts.advertiseHost);
  if (opts.publicAddress) args.push('--public-address', opts.publicAddress);
  for (const j of opts.join ?? []) args.push('--join', j);
  // A new network's admins: this node's key (the daemon adds it), your developer key, any --admin.
  for (const a of await networkAdmins(opts.admin)) args.push('--admin', a);
  if (opts.open) args.push('--open');
  if (opts.genesis) args.push('--genesis', opts.genesis);
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log.fd, log.fd], env: process.env });
  child.unref();
  await log.close();
  const t0 = Date.now();
  if (!opts.json) process.stdout.write(`starting formationd (pid ${child.pid}), log: ${paths.logFile}\n`);
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? 1;
  });
  while (Date.now() - t0 < timeoutS * 1000) {
    await new Promise((r) => setTimeout(r, 200));
    if (exited !== null || (child.pid && !pidAlive(child.pid))) {
      const tail = (await readFile(paths.logFile, 'utf8')).slice(startOffset).trim().split('\n').slice(-15).join('\n');
      throw new FormError('UNAVAILABLE', `Cannot start formationd: it exited (code ${exited ?? '?'})\n${tail}`, {
        hint: `See the whole log in ${paths.logFile}; \`form node doctor\` checks the host.`,
      });
    }
    const d = await readDaemon(dataDir);
    if (d.running && d.info?.ready) {
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (opts.json) printJson({ ok: true, ...d.info, startupSeconds: Number(secs) });
      else printInfo(d.info, `formationd is up in ${secs} s`);
      return 0;
    }
  }
  throw new FormError(
    'TIMEOUT',
    `Cannot confirm formationd is healthy after ${timeoutS} s (pid ${child.pid} still starting)`,
    {
      hint: `Check ${paths.logFile}; stop it with \`form node down\`.`,
    },
  );
}

function printInfo(info: NonNullable<Awaited<ReturnType<typeof NodeLight.readDaemon>>['info']>, title: string): void {
  process.stdout.write(
    `${pc.green(title)} (pid ${info.pid})\n` +
      `  node:    ${info.nodeAddress}\n` +
      `  APIs:    formnet ${info.host}:${info.ports.formnet}  vmm :${info.ports.vmm}  pack :${info.ports.pack}  state :${info.ports.state}\n` +
      `  DNS:     *.${info.domain} on ${info.host}:${info.ports.dns}\n` +
      `  netns:   ${info.netns ?? '(host namespace)'}\n` +
      `  VMs:     QEMU with ${info.accel}\n` +
      `  log:     ${info.logFile}\n`,
  );
}

export async function nodeDown(opts: { timeout: string }): Promise<number> {
  await (await import('../formnet-session.ts')).reapFormnetSessions().catch(() => []); // peers of killed `form ssh`/`proxy`
  const { nodePaths, pidAlive, readDaemon } = await import('@formation/node/light');
  const dataDir = formHome();
  const d = await readDaemon(dataDir);
  if (!d.running || d.pid === null) {
    process.stdout.write('formationd is not running\n');
    return 0;
  }
  process.kill(d.pid, 'SIGTERM');
  const deadline = Date.now() + Number(opts.timeout) * 1000;
  while (Date.now() < deadline && pidAlive(d.pid)) await new Promise((r) => setTimeout(r, 200));
  if (pidAlive(d.pid)) {
    process.kill(d.pid, 'SIGKILL');
    process.stderr.write(`formationd did not stop within ${opts.timeout} s; killed pid ${d.pid}\n`);
  }
  const paths = nodePaths(dataDir);
  await rm(paths.pidFile, { force: true });
  await rm(paths.infoFile, { force: true });
  process.stdout.write(`formationd stopped (pid ${d.pid})\n`);
  return 0;
}

export async function nodeStatus(opts: { json?: boolean }): Promise<number> {
  const { nodePaths, readDaemon } = await import('@formation/node/light');
  const dataDir = formHome();
  const d = await readDaemon(dataDir);
  if (opts.json) {
    printJson({ running: d.running, ...(d.info ?? {}), logFile: nodePaths(dataDir).logFile });
    return d.running ? 0 : 1;
  }
  if (!d.running || !d.info) {
    process.stdout.write(
      `formationd is not running (start it with \`form node up\`); log: ${nodePaths(dataDir).logFile}\n`,
    );
    return 1;
  }
  printInfo(d.info, 'formationd is running');
  return 0;
}

export async function nodeDoctor(opts: { json?: boolean; skipKvmProbe?: boolean }): Promise<number> {
  const { evaluateHost, probeHost } = await import('@formation/node');
  const findings = evaluateHost(
    await probeHost(formHome(), {
      portOffset: Number(process.env.FORM_PORT_OFFSET ?? 0) || 0,
      skipKvmProbe: opts.skipKvmProbe === true,
    }),
  );
  const failed = findings.some((f) => f.status === 'fail');
  if (opts.json) {
    printJson({ ok: !failed, findings });
  } else {
    const mark = { ok: pc.green('ok  '), warn: pc.yellow('warn'), fail: pc.red('FAIL') } as const;
    for (const f of findings) {
      process.stdout.write(`${mark[f.status]} ${f.id.padEnd(13)} ${f.summary}\n`);
      if (f.fix && f.status !== 'ok') process.stdout.write(`     ${''.padEnd(13)} ${pc.cyan('fix:')} ${f.fix}\n`);
    }
    process.stdout.write(
      failed ? 'Some checks failed: fix them before `form node up`.\n' : 'This host can run a Formation node.\n',
    );
  }
  return failed ? 1 : 0;
}

/** --admin keys plus the developer key when there is one (so `form node admit` works with it). */
async function networkAdmins(extra: string[] = []): Promise<string[]> {
  for (const k of extra) {
    if (!/^0[23][0-9a-f]{64}$/.test(k))
      throw new FormError('CLI_USAGE', `Cannot use --admin ${k}: not a public key (66 hex characters, 02/03 first)`);
  }
  const { developerKeyPath } = await import('@formation/identity');
  const { readKitConfig } = await import('../cli-config.ts');
  const path = (await readKitConfig())?.keyPath ?? developerKeyPath();
  let dev: string | undefined;
  try {
    const { loadKey } = await import('@formation/identity');
    dev = (await loadKey(path)).publicKey;
  } catch {
    dev = undefined; // no developer key yet: `form kit init` makes one; the node key alone is admin
  }
  return [...new Set([...(dev ? [dev] : []), ...extra])];
}
