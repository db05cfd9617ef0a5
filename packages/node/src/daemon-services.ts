import { renameSync, rmSync, writeFileSync } from 'node:fs';
import {
  createDnsResponder,
  createFormnetService,
  type DnsResponder,
  removeLeakGuard,
  StateFormnetAdapter,
  startFormnetDns,
  startNodeFormnet,
} from '@formation/net';
import { setApiIdentity } from '@formation/service';
import { PRESENCE_TOPIC, signPresence } from '@formation/state';
import { InstanceController } from './controller.ts';
import { type DaemonComponent, type DaemonContext, listenApi, need } from './daemon-context.ts';
import { removeStaleWireGuard } from './daemon-core.ts';
import { EXTRA_SERVICES, startExtraService } from './extra-services.ts';
import { netnsTransport } from './netns-probe.ts';
import { registerNodeRoutes } from './node-routes.ts';
import { ReplicaHealthMonitor } from './replica-health.ts';
import { findRevisionFile } from './replication.ts';

const VERSION = '0.1.0';

/**
 * formnet: this node's WireGuard interface (in its namespace), peers kept equal to state, and the
 * formnet API with the node routes (what a developer tool on this host needs to attach a temporary
 * peer, see `form ssh`; committed revisions by sha256 for the other replicas' nodes).
 */
export const formnetComponent: DaemonComponent = {
  name: 'formnet',
  async start(ctx, onStop) {
    const { config, ports, logger } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const wg = need(ctx, 'wg');
    const advertise = need(ctx, 'advertise');
    const instanceCidr = need(ctx, 'instanceCidr');
    const vmm = need(ctx, 'vmm');
    const formnetState = new StateFormnetAdapter({ store, nodeKey: key });
    ctx.parts.formnetState = formnetState;
    const self = await formnetState.upsertMember({
      id: key.address,
      publicKey: key.publicKey,
      kind: 'node',
      wgPublicKey: wg.publicKey,
      ...(config.advertiseHost || config.publicAddress ? { endpoint: `${advertise}:${ports.wireguard}` } : {}),
    });
    ctx.parts.formnetAddress = self.address;
    const wgName = `fwg${key.address.slice(2, 10)}`;
    removeStaleWireGuard(wgName, config.netns);
    const formnet = await startNodeFormnet({
      name: wgName,
      netns: config.netns,
      privateKey: wg.privateKey,
      listenPort: ports.wireguard,
      selfId: key.address,
      address: self.address,
      state: formnetState,
      logger,
    });
    onStop(() => formnet.stop());
    const offFormnet = store.onAccepted((op) => {
      if (op.kind.startsWith('formnet.') || op.kind.startsWith('node.'))
        void formnet.reconcileNow().catch(() => undefined);
    });
    onStop(() => offFormnet());
    const formnetApp = await createFormnetService({
      state: formnetState,
      logger,
      onChange: async () => {
        await formnet.reconcileNow();
      },
      dns: { server: config.host, port: ports.dns, domain: config.domain },
    });
    registerNodeRoutes(formnetApp, {
      info: () => ({
        node: key.address,
        netns: config.netns ?? null,
        wireguardPort: ports.wireguard,
        formnetAddress: self.address,
        instanceCidr,
        domain: config.domain,
        dns: { host: config.host, port: ports.dns },
        nodeKey: key.publicKey,
        publicAddress: config.publicAddress ?? null,
      }),
      isNode: (publicKey) => store.views().nodes.some((n) => n.id === publicKey),
      revisionFile: (sha256) => findRevisionFile(config.dataDir, vmm.manager.list(), sha256),
    });
    setApiIdentity(formnetApp, key.publicKey);
    await listenApi(ctx, onStop, formnetApp, ports.formnet, 'formnet', () => formnetApp.close());
  },
};

/**
 * DNS: <name>.<domain> -> the instance's formnet addresses, from state; the same names on the formnet
 * address, port 53, for members' stock resolvers (a warning if it cannot bind).
 */
export const dnsComponent: DaemonComponent = {
  name: 'dns',
  async start(ctx, onStop) {
    const { config, logger } = ctx;
    const store = need(ctx, 'store');
    const dns: DnsResponder = await createDnsResponder({
      domain: config.domain,
      host: config.host,
      port: ctx.ports.dns,
      logger,
      records: (name) => {
        const fqdn = `${name}.${config.domain}`;
        const rec = store.views().dns.find((d) => d.name === fqdn || d.name === name);
        return rec ? rec.addresses : undefined;
      },
    });
    onStop(() => dns.close());
    const formnetDns = await startFormnetDns({
      address: need(ctx, 'formnetAddress'),
      domain: config.domain,
      logger,
      records: (name) =>
        store.views().dns.find((d) => d.name === `${name}.${config.domain}` || d.name === name)?.addresses,
    });
    if (formnetDns) onStop(() => formnetDns.close());
  },
};

/**
 * The controller that turns state into running instances, each replica's HEALTHCHECK (run by the node
 * that holds it, reported as instance.health), and liveness: signed presence gossiped every
 * heartbeatMs (memory only at every node); other nodes treat a node whose last presence or heartbeat is
 * older than nodeTimeoutMs as gone and re-place its replicas. A durable node.heartbeat op is recorded
 * at start and every heartbeatOpMs, so the log keeps a "last seen" without one op per beat.
 */
export const controllerComponent: DaemonComponent = {
  name: 'controller',
  start(ctx, onStop) {
    const { config, logger, log } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const vmm = need(ctx, 'vmm');
    const p2p = need(ctx, 'p2p');
    const controller = new InstanceController({
      nodeKey: key,
      store,
      vmm: vmm.manager,
      formpacksDir: need(ctx, 'vmmConfig').formpacksDir,
      dataDir: config.dataDir,
      logger,
      nodeTimeoutMs: config.nodeTimeoutMs,
      peerApiHost: config.peerApiHost,
      autostopMinuteMs: config.autostopMinuteMs,
    });
    ctx.wakeReplica = (vmId) => controller.wake(vmId);
    const off = store.onAccepted(() => controller.kick());
    onStop(() => off());
    controller.start();
    const health = new ReplicaHealthMonitor({
      nodeKey: key,
      store,
      vmm: vmm.manager,
      logger,
      // formationd runs outside its namespace: checks must start inside it, where formnet is routed.
      ...(config.netns ? { transport: netnsTransport(config.netns) } : {}),
    });
    health.start();
    onStop(() => health.close());

    const beat = () => {
      const p = signPresence(key, 'healthy');
      store.presence.record(p);
      void p2p.broadcast(PRESENCE_TOPIC, new TextEncoder().encode(JSON.stringify(p)));
    };
    const recordBeat = () => {
      try {
        store.author(key, 'node.heartbeat', { status: 'healthy' });
      } catch (err) {
        log.warn({ err }, 'heartbeat not recorded');
      }
    };
    recordBeat();
    beat();
    const heartbeat = setInterval(beat, config.heartbeatMs);
    heartbeat.unref();
    const heartbeatOp = setInterval(recordBeat, config.heartbeatOpMs);
    heartbeatOp.unref();
    onStop(() => {
      clearInterval(heartbeat);
      clearInterval(heartbeatOp);
    });
    // Stop steps run last-in first-out: the controller stops reconciling, then records its replicas as stopped.
    onStop(() => controller.markStopped());
    onStop(() => controller.close());
  },
};

/**
 * The optional services (runtime, ingress, guest TLS, public DNS, dashboard), one component each: a
 * service that cannot run here is skipped with a warning and the node stays up (extra-services.ts).
 */
export const extraServiceComponents: readonly DaemonComponent[] = EXTRA_SERVICES.map((service) => ({
  name: service.name,
  async start(ctx, onStop) {
    await startExtraService(service, {
      config: ctx.config,
      ports: ctx.ports,
      key: need(ctx, 'key'),
      store: need(ctx, 'store'),
      vmm: need(ctx, 'vmm'),
      logger: ctx.logger,
      onClose: onStop,
    });
  },
}));

/**
 * Ready: write the pid and info files (removed last on close, by `pidFilesComponent`), and with a
 * namespace remove its leak guard first on close.
 */
export const readyComponent: DaemonComponent = {
  name: 'ready',
  start(ctx, onStop) {
    const { config, paths, ports } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const vmm = need(ctx, 'vmm');
    const info: NonNullable<DaemonContext['info']> = {
      pid: process.pid,
      startedAt: new Date().toISOString(),
      ready: true,
      version: VERSION,
      host: config.host,
      ports,
      netns: config.netns ?? null,
      domain: config.domain,
      nodeAddress: key.address,
      accel: vmm.manager.fingerprint?.accel ?? 'unknown',
      logFile: paths.logFile,
      formnetAddress: need(ctx, 'formnetAddress'),
      instanceCidr: need(ctx, 'instanceCidr'),
      genesis: store.genesis ?? null,
      p2p: need(ctx, 'p2p').multiaddrs(),
      // What a developer checks `form kit init --node https://<publicAddress>` against.
      nodeKey: key.publicKey,
      publicAddress: config.publicAddress ?? null,
      tlsFingerprint: ctx.parts.tls?.fingerprint ?? null,
    };
    ctx.info = info;
    writeAtomic(paths.pidFile, `${process.pid}\n`);
    writeAtomic(paths.infoFile, `${JSON.stringify(info, null, 2)}\n`);
    ctx.wroteInfo = true;
    const netns = config.netns;
    if (netns) onStop(() => removeLeakGuard(netns));
    ctx.log.info({ ports, accel: info.accel }, 'formationd ready');
  },
};

/**
 * First in the list so its stop runs last: removes the pid and info files once everything else is
 * down, and only when this start wrote them (a start that fails, e.g. on a port in use by a running
 * node, leaves that node's files alone).
 */
export const pidFilesComponent: DaemonComponent = {
  name: 'pid-files',
  start(ctx, onStop) {
    onStop(() => {
      if (!ctx.wroteInfo) return;
      rmSync(ctx.paths.pidFile, { force: true });
      rmSync(ctx.paths.infoFile, { force: true });
    });
  },
};

/** Write a file atomically (temp + rename) so readers never see half of it. */
function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
