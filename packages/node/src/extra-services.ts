import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { addressOf, type KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createRuntimeService, loadRuntimeConfig, runcUnavailable } from '@formation/runtime';
import { type Logger, setApiIdentity } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { VmmService } from '@formation/vmm';
import { createWebService } from '@formation/web';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { NodeConfig, NodePorts } from './config.ts';
import { acmeSettingsFromEnv, startGuestTls } from './guest-tls.ts';
import { startNodeIngress } from './ingress.ts';
import { startPublicDnsOnPublic } from './public-dns.ts';

/** What the optional services of a node get from formationd. */
export interface ExtraServicesContext {
  config: NodeConfig;
  ports: NodePorts;
  key: KeyPair;
  store: StateStore;
  vmm: VmmService;
  logger: Logger;
  /** Register a cleanup step (run in reverse order on close). */
  onClose(fn: () => Promise<void> | void): void;
}

/**
 * One service beside the deploy path: why it is off here (null when it should run), how to start it
 * (what it says when running), and the warning logged when it cannot start.
 */
export interface ExtraService {
  /** The key in `startExtraServices`' result, and formationd's component name. */
  readonly name: 'runtime' | 'ingress' | 'guestTls' | 'publicDns' | 'web';
  off(ctx: ExtraServicesContext): string | null;
  start(ctx: ExtraServicesContext): Promise<string>;
  /** The warning when start fails (the node stays up). */
  readonly notStarted: string;
}

/** The optional services, in start order (formationd starts each as a component of its own). */
export const EXTRA_SERVICES: readonly ExtraService[] = [
  {
    name: 'runtime',
    off: () => (process.env.FORM_RUNTIME === 'off' ? 'off (FORM_RUNTIME=off)' : null),
    start: (ctx) => startRuntime(ctx),
    notStarted: 'compute runtime not started',
  },
  {
    name: 'ingress',
    off: (ctx) =>
      !ctx.config.publicAddress
        ? 'off (no --public-address)'
        : !ctx.config.ingressHttpPort && !ctx.config.ingressTlsPort
          ? 'off (both ports 0)'
          : null,
    start: (ctx) => startIngressOnPublic(ctx),
    notStarted: 'ingress not started',
  },
  {
    // HTTPS in the guest (Formfile `HTTPS`): local replicas learn their ingress names and the ACME directory.
    name: 'guestTls',
    off: () => null,
    start: async (ctx) => {
      const acme = acmeSettingsFromEnv(process.env);
      if (!acme) return 'off (no FORM_ACME_DIRECTORY)';
      const tls = startGuestTls({
        store: ctx.store,
        vmm: ctx.vmm.manager,
        domain: ctx.config.domain,
        acme,
        logger: ctx.logger,
      });
      ctx.onClose(() => tls.close());
      return `on (ACME directory ${acme.directory})`;
    },
    notStarted: 'guest HTTPS names not started',
  },
  {
    name: 'publicDns',
    off: (ctx) =>
      !ctx.config.publicAddress ? 'off (no --public-address)' : !ctx.config.publicDnsPort ? 'off (port 0)' : null,
    start: (ctx) => startPublicDnsOnPublic(ctx),
    notStarted: 'public DNS not started',
  },
  {
    name: 'web',
    off: () => (process.env.FORM_WEB === 'off' ? 'off (FORM_WEB=off)' : null),
    start: (ctx) => startWeb(ctx),
    notStarted: 'dashboard not started',
  },
];

/**
 * Start one optional service, or say why it is off; one that cannot run on this host is skipped with
 * a warning naming why (never thrown: the node stays up). Returns `running on …`, `off (…)` or `skipped: …`.
 */
export async function startExtraService(service: ExtraService, ctx: ExtraServicesContext): Promise<string> {
  const off = service.off(ctx);
  if (off !== null) return off;
  try {
    return await service.start(ctx);
  } catch (err) {
    ctx.logger.child({ component: 'formationd' }).warn({ reason: (err as Error).message }, service.notStarted);
    return `skipped: ${(err as Error).message}`;
  }
}

/**
 * Services beside the deploy path (compute runtime, ingress, guest TLS, public DNS, dashboard), started
 * after the core ones, in the order of `EXTRA_SERVICES`. Returns, per service, what `startExtraService` says.
 */
export async function startExtraServices(ctx: ExtraServicesContext): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const service of EXTRA_SERVICES) result[service.name] = await startExtraService(service, ctx);
  return result;
}

/** The public ingress (HTTP :80 by Host, TLS :443 passed through by SNI) on the node's public address. */
async function startIngressOnPublic(ctx: ExtraServicesContext): Promise<string> {
  const host = ctx.config.publicAddress as string;
  let acme: ReturnType<typeof acmeSettingsFromEnv>;
  try {
    acme = acmeSettingsFromEnv(process.env);
  } catch {
    acme = undefined; // said once by the guest HTTPS service below
  }
  const ingress = await startNodeIngress({
    host,
    httpPort: ctx.config.ingressHttpPort,
    tlsPort: ctx.config.ingressTlsPort,
    store: ctx.store,
    domain: ctx.config.domain,
    logger: ctx.logger,
    key: ctx.key,
    // formnet is routed in the node's namespace only: replicas are dialed from there.
    netns: ctx.config.netns ?? null,
    // HTTPS <port> TERMINATE=ingress: this node's own certificates, from the same ACME directory as guests'.
    ...(acme ? { tlsTermination: { dir: join(ctx.config.dataDir, 'node', 'ingress-tls'), acme } } : {}),
    // Plain TCP mappings never take this node's own ports, whatever the state says.
    tcp: {
      reservedPorts: new Set([
        ...Object.values(ctx.ports),
        ctx.config.ingressHttpPort,
        ctx.config.ingressTlsPort,
        ctx.config.publicDnsPort,
      ]),
    },
  });
  ctx.onClose(() => ingress.close());
  const on = [
    ctx.config.ingressHttpPort ? `http ${host}:${ctx.config.ingressHttpPort}` : '',
    ctx.config.ingressTlsPort ? `tls ${host}:${ctx.config.ingressTlsPort}` : '',
  ].filter(Boolean);
  ctx.logger.child({ component: 'formationd' }).info({ listen: on }, 'ingress ready');
  return `running on ${on.join(', ')}`;
}

/** The dashboard on :3010, talking to this node's APIs; `form web login` prints the sign-in link. */
async function startWeb(ctx: ExtraServicesContext): Promise<string> {
  const host = ctx.config.host === '0.0.0.0' ? '127.0.0.1' : ctx.config.host;
  const u = (p: number) => `http://${host}:${p}`;
  const web = await createWebService({
    urls: { state: u(ctx.ports.state), pack: u(ctx.ports.pack), vmm: u(ctx.ports.vmm), formnet: u(ctx.ports.formnet) },
    logger: ctx.logger,
    nodeKey: ctx.key,
  });
  ctx.onClose(() => web.close());
  setApiIdentity(web.app, ctx.key.publicKey); // a login signed for this node is good nowhere else
  await web.app.listen({ host: ctx.config.host, port: ctx.ports.web });
  return `running on ${ctx.config.host}:${ctx.ports.web}`;
}

/**
 * The HyMatrix/VMDocker-compatible runtime: its own Redis (append-only, in the data dir, so a node
 * restart loses no process) unless FORM_RUNTIME_REDIS_URL points at one, and its API on :3006.
 */
async function startRuntime(ctx: ExtraServicesContext): Promise<string> {
  const why = await runcUnavailable();
  if (why) throw new Error(why);
  const dataDir = join(ctx.config.dataDir, 'runtime');
  mkdirSync(dataDir, { recursive: true });
  let redisURL = process.env.FORM_RUNTIME_REDIS_URL;
  if (!redisURL) {
    const redis = await startRedis(join(dataDir, 'redis'), ctx.config.host, ctx.ports.runtimeRedis);
    ctx.onClose(() => stopChild(redis));
    redisURL = `redis://${ctx.config.host}:${ctx.ports.runtimeRedis}/0`;
  }
  const config = loadRuntimeConfig({
    env: process.env,
    flags: {
      port: `${ctx.config.host}:${ctx.ports.runtime}`,
      nodeURL: `http://${ctx.config.advertiseHost ?? ctx.config.host}:${ctx.ports.runtime}`,
      nodeName: `node-${ctx.key.address.slice(2, 10)}`,
      prvKey: bytesToHex(ctx.key.privateKey),
      redisURL,
      dataDir,
      // Who may import images and register modules: FORM_RUNTIME_ADMINS, else the network's admins
      // (as of this start). Nobody else: an image import reads host paths.
      ...(process.env.FORM_RUNTIME_ADMINS ? {} : { admins: ctx.store.views().network.admins.map((k) => addressOf(k)) }),
    },
  });
  const runtime = await createRuntimeService({ config, logger: ctx.logger });
  ctx.onClose(() => runtime.close());
  setApiIdentity(runtime.app, ctx.key.publicKey);
  await runtime.app.listen({ host: ctx.config.host, port: ctx.ports.runtime });
  return `running on ${ctx.config.host}:${ctx.ports.runtime}`;
}

/**
 * Start the runtime's own Redis on host:port, first ending a Redis this node left (its pid file, only if
 * that PID is a redis-server). Refuses (CONFLICT) when anything else holds the port. Exported for tests.
 */
export async function startRedis(dir: string, host: string, port: number): Promise<ChildProcess> {
  mkdirSync(dir, { recursive: true });
  // A node that was killed leaves its Redis running: end that one (found by the pid file we keep,
  // checked to be redis-server) so this node owns the one it talks to and stops it on `node down`.
  const pidFile = join(dir, 'formationd-redis.pid');
  const stale = Number.parseInt(existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : '', 10);
  if (stale > 0) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${stale}/cmdline`, 'utf8');
    } catch {}
    if (cmd.startsWith('redis-server')) {
      process.kill(stale, 'SIGTERM');
      for (let i = 0; i < 100 && existsSync(`/proc/${stale}`); i++) await new Promise((r) => setTimeout(r, 50));
    }
  }
  // Something else on the port (another node's or a leftover Redis, or any program) must not be taken
  // for ours: the runtime would keep its processes' state in a store this node does not own.
  if (await canConnect(host, port)) {
    throw new FormError(
      'CONFLICT',
      `Cannot start the runtime's Redis: port ${port} on ${host} is already in use by another process, not this node's Redis (stop it, or use another --port-offset)`,
      { hint: 'Stop that process, or use another --port-offset.' },
    );
  }
  const child = spawn(
    'redis-server',
    [
      '--bind',
      host,
      '--port',
      String(port),
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
    ],
    { stdio: 'ignore' },
  );
  if (child.pid) writeFileSync(pidFile, `${child.pid}\n`);
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (err) =>
      reject(new Error(`cannot start redis-server: ${err.message} (apt-get install redis-server)`)),
    );
    child.once('exit', (code) => reject(new Error(`redis-server exited with code ${code} (port ${port} in use?)`)));
  });
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      if (await canConnect(host, port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not listen on ${host}:${port} within 5 s`);
  })();
  try {
    await Promise.race([ready, failed]);
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  failed.catch(() => undefined);
  return child;
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** End a child we started, by its PID: SIGTERM, then SIGKILL after 5 s. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
