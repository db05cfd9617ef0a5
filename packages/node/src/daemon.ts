import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerAttestRoutes } from '@formation/attest';
import {
  generateWireGuardKeyPair,
  type KeyPair,
  loadOrCreateKey,
  type WireGuardKeyPair,
  wireGuardKeyPairFromPrivate,
} from '@formation/identity';
import { FormError } from '@formation/interface';
import {
  allocateNodeSlice,
  createDnsResponder,
  createFormnetService,
  type DnsResponder,
  installLeakGuard,
  removeLeakGuard,
  StateFormnetAdapter,
  startFormnetDns,
  startNodeFormnet,
} from '@formation/net';
import { createP2PNode, type P2PNode, peerIdOfKey } from '@formation/p2p';
import { createPackService } from '@formation/pack';
import { vmNameFor } from '@formation/scheduler';
import {
  type ApiServer,
  type Logger,
  listenTls,
  loadOrCreateTlsIdentity,
  setApiIdentity,
  type TlsIdentity,
} from '@formation/service';
import { createStateService, openStateStore, PRESENCE_TOPIC, type StateStore, signPresence } from '@formation/state';
import { createVmmService, fingerprintGpus, loadVmmConfig, type VmmService } from '@formation/vmm';
import { mayFetchFormpack, startNetwork, waitForAdmission } from './admission.ts';
import { type NodeConfig, type NodeInfo, nodePaths, nodePorts } from './config.ts';
import { InstanceController } from './controller.ts';
import { startExtraServices } from './extra-services.ts';
import { gpuRecordUpdate } from './gpu-report.ts';
import { deleteNetns, ensureNetns } from './netns.ts';
import { netnsTransport } from './netns-probe.ts';
import { registerNodeRoutes } from './node-routes.ts';
import { ReplicaHealthMonitor } from './replica-health.ts';
import { findRevisionFile, isLoopbackHost } from './replication.ts';

const VERSION = '0.1.0';
export interface RunningNode {
  key: KeyPair;
  store: StateStore;
  vmm: VmmService;
  info: NodeInfo;
  close(): Promise<void>;
}

/**
 * With a public address, the plain-HTTP listeners must stay on loopback: a `host` of 0.0.0.0 or of the
 * public address itself would serve the APIs in clear to other hosts (and take the TLS listeners' ports).
 */
export function checkPublicConfig(config: Pick<NodeConfig, 'host' | 'publicAddress'>): void {
  if (!config.publicAddress || isLoopbackHost(config.host)) return;
  throw new FormError(
    'CONFIG_INVALID',
    `Cannot start with --public-address ${config.publicAddress} and host ${config.host}: the plain-HTTP APIs listen on host, which must be loopback when the node is public`,
    { hint: 'Drop --host / FORM_HOST (default 127.0.0.1): other hosts reach the APIs over TLS on the public address.' },
  );
}

/** Write a file atomically (temp + rename) so readers never see half of it. */
function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * Start every service of a node in this process: state (3004), pack (3003), VMM (3002), formnet
 * (3001), DNS, and the controller that turns state into running instances. With `config.netns` the
 * instances' bridge, TAPs and WireGuard live in that namespace (created here, removed on close);
 * the APIs stay on `config.host` (127.0.0.1 by default). With `config.publicAddress` the four
 * developer APIs also listen there over TLS (certificate bound to the node key, same ports), libp2p
 * listens and is advertised there, and the node registers it as its endpoint; Redis, DNS, the runtime
 * and the dashboard never listen on it (see the README's table).
 */
export async function startNode(config: NodeConfig, logger: Logger): Promise<RunningNode> {
  checkPublicConfig(config);
  const paths = nodePaths(config.dataDir);
  const ports = nodePorts(config);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const log = logger.child({ component: 'formationd' });
  const cleanups: Array<() => Promise<void> | void> = [];
  const closeAll = async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log.warn({ err }, 'cleanup step failed');
      }
    }
  };
  try {
    const key = await loadOrCreateKey(paths.keyFile);
    log.info({ node: key.address, dataDir: config.dataDir, netns: config.netns ?? null }, 'formationd starting');
    // Public APIs are TLS only, with a certificate bound to the node key (clients pin the key, no CA).
    const tls: TlsIdentity | null = config.publicAddress ? await loadOrCreateTlsIdentity(paths.dir, key) : null;
    if (tls)
      log.info(
        { publicAddress: config.publicAddress, tlsFingerprint: tls.fingerprint, created: tls.created },
        'TLS identity',
      );
    /** Serve `app` over TLS on the public address too (same port as on loopback). */
    const listenPublic = async (app: ApiServer, port: number, name: string): Promise<void> => {
      if (!tls || !config.publicAddress) return;
      const l = await listenTls(app, { host: config.publicAddress, port, key: tls.key, cert: tls.cert, name });
      cleanups.push(() => l.close());
    };

    if (config.netns) {
      // We own the namespace when we created it, also across a crash and restart (remembered in a
      // file), so `form node down` removes it; a namespace made by someone else (the devnet) is kept.
      const ownedFile = join(paths.dir, 'netns-owned');
      const ownedBefore = existsSync(ownedFile) && readFileSync(ownedFile, 'utf8').trim() === config.netns;
      const created = await ensureNetns(config.netns);
      if (created) writeFileSync(ownedFile, `${config.netns}\n`);
      if (created || ownedBefore) {
        cleanups.push(async () => {
          await deleteNetns(config.netns as string);
          rmSync(ownedFile, { force: true });
        });
      }
      await installLeakGuard(config.netns).catch((err: unknown) => log.warn({ err }, 'leak guard in netns'));
    }

    // State: the signed op log everything else records into.
    const store = openStateStore({
      path: paths.stateDb,
      logger,
      domain: config.domain,
      ...(config.genesis ? { genesis: config.genesis } : {}),
    });
    cleanups.push(() => store.close());
    const stateApp = await createStateService({ store, logger });
    setApiIdentity(stateApp, key.publicKey); // signed requests to this node's APIs must name this node
    await listen(stateApp, config.host, ports.state, 'state');
    cleanups.push(() => stateApp.close());
    await listenPublic(stateApp, ports.state, 'state');

    // p2p: gossip of accepted ops and anti-entropy with the nodes we join (a network of one when none).
    // Started before this node registers, and synced with the bootstrap nodes first, so the slice and
    // formnet address it picks are chosen knowing the network's (first allocation wins, but a node
    // that picks a free one avoids the retry).
    const p2p = await createP2PNode({
      key,
      store,
      logger,
      // Noise encrypts and authenticates libp2p itself; on the public address other hosts reach it.
      listen: [
        `/ip4/${config.host}/tcp/${ports.p2p}`,
        ...(config.publicAddress && config.publicAddress !== config.host
          ? [`/ip4/${config.publicAddress}/tcp/${ports.p2p}`]
          : []),
      ],
      bootstrap: config.join,
      syncIntervalMs: 2000,
      channels: [
        {
          // Signed liveness of registered nodes: kept in memory (store.presence), forwarded only when new.
          topic: PRESENCE_TOPIC,
          validate: (data) => {
            let p: unknown;
            try {
              p = JSON.parse(new TextDecoder().decode(data));
            } catch {
              return 'reject';
            }
            const node = (p as { node?: unknown }).node;
            // not registered (yet); a direct lookup: this runs for every presence message
            if (typeof node !== 'string' || !store.viewIndex.registrationOf(node)) return 'ignore';
            const r = store.presence.record(p);
            if (r === 'accepted') return 'accept';
            if (r === 'stale') return 'ignore';
            // Too far from this clock: maybe ours is off, so the relay is not penalised (gossip scoring).
            return /from this clock/.test(r.problem) ? 'ignore' : 'reject';
          },
        },
      ],
    });
    cleanups.push(() => p2p.stop());
    if (config.join.length > 0) await syncWithBootstrap(p2p, config.joinSyncTimeoutMs, log);

    // The node's slice of formnet for its instances: what it was admitted (or registered) with before,
    // else configured, else the first free one. The first node of a new network writes its genesis
    // and admits itself; a joining node waits here until an admin admits it (admission.ts).
    const registeredBefore = store.viewIndex.registrationOf(key.publicKey);
    const proposed =
      store.views().nodes.find((n) => n.id === key.publicKey)?.formnetRange ||
      config.instanceCidr ||
      allocateNodeSlice(
        store
          .views()
          .nodes.map((n) => n.formnetRange)
          .filter(Boolean),
      );
    if (config.join.length === 0) {
      const genesis = startNetwork(
        store,
        key,
        { name: config.networkName, admission: config.admission, admins: config.admins },
        proposed,
      );
      if (genesis) log.info({ genesis, admission: config.admission }, 'started a new network');
      else if (!store.genesis) log.warn('this state has nodes but no genesis: running as a legacy open network');
    }
    const instanceCidr = await waitForAdmission({
      store,
      key,
      joining: config.join.length > 0,
      proposed,
      logger,
      timeoutMs: config.admissionTimeoutMs,
    });
    const wg = loadOrCreateWireGuardKey(paths.wgKeyFile);
    // A public address is what other hosts reach: it implies advertiseHost.
    const advertise = config.advertiseHost ?? config.publicAddress ?? config.host;

    // Pack: builds Formpacks into <dataDir>/formpacks, where the VMM boots them from. The base image
    // cache is shared by every node on the host (FORM_PACK_CACHE), so a devnet builds it once.
    const pack = await createPackService({
      dataDir: config.dataDir,
      cacheDir: process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache',
      logger,
      // Besides the owner, only an admitted node holding a claim on a live instance of that owner
      // running this Formpack may fetch its artifacts (whole disks, password hashes) and ENV values.
      authorizeFetch: (signer, formpackId, owner) => mayFetchFormpack(store.views(), signer, formpackId, owner),
    });
    setApiIdentity(pack.app, key.publicKey);
    await listen(pack.app, config.host, ports.pack, 'pack');
    cleanups.push(() => pack.close());
    await listenPublic(pack.app, ports.pack, 'pack');

    // VMM: instances on a bridge in the node's namespace (TAP mode) when it has one, else user-mode NAT.
    const vmmConfig = loadVmmConfig(process.env, {
      apiPort: ports.vmm,
      apiHost: config.host,
      vmDir: join(config.dataDir, 'vms'),
      formpacksDir: join(config.dataDir, 'formpacks'),
      imagesDir: join(config.dataDir, 'images'),
      bootSnapshots: config.bootSnapshots,
      bootSnapshotMaxMiB: config.bootSnapshotMaxMiB,
      network: config.netns
        ? { mode: 'tap', netns: config.netns, createNetns: false, bridge: 'formbr0', cidr: instanceCidr }
        : { mode: 'user', createNetns: false, bridge: 'formbr0', cidr: instanceCidr },
    });
    // An instance's VM belongs to the instance's owner (the controller boots it with the node key).
    const instanceOwnerOf = (vm: { name: string; owner: string | null }): string | null =>
      vm.owner ?? store.views().instances.find((i) => !i.deleted && vmNameFor(i) === vm.name)?.ownerAddress ?? null;
    // Scale to zero: a connection to a suspended replica wakes it once the controller (below) agrees.
    let wakeReplica: ((vmId: string) => Promise<void>) | undefined;
    const vmm = await createVmmService({
      config: vmmConfig,
      logger,
      onWake: (vmId) => (wakeReplica ? wakeReplica(vmId) : Promise.reject(new Error('the node is starting'))),
      access: { operators: [key.publicKey], ownerOf: instanceOwnerOf },
      // Guests resolve <name>.<domain> through the forwarder on their gateway (the rest goes upstream).
      dns: {
        domain: config.domain,
        records: (name) =>
          store.views().dns.find((d) => d.name === `${name}.${config.domain}` || d.name === name)?.addresses,
      },
      // Attestation (measured boot reports, sealed secrets) lives on the VMM API, beside the VMs it measures.
      routes: (app, manager) =>
        registerAttestRoutes(app, {
          nodeKey: key,
          vmm: manager,
          logger,
          ownerOf: instanceOwnerOf,
        }),
    });
    setApiIdentity(vmm.app, key.publicKey);
    await listen(vmm.app, config.host, ports.vmm, 'vmm');
    // `form node down` (SIGTERM) stops the VMs cleanly; a crash leaves them running for re-attach.
    cleanups.push(() => vmm.close({ stopVms: true }));
    await listenPublic(vmm.app, ports.vmm, 'vmm');

    // Register this node in state once (capacity from the VMM's accounting).
    if (!registeredBefore) {
      store.author(key, 'node.register', {
        name: `node-${key.address.slice(2, 10)}`,
        capacity: vmm.manager.capacity().capacity,
        endpoint: `${advertise}:${ports.p2p}`,
        p2pPeerId: peerIdOfKey(key).toString(),
        wgPublicKey: wg.publicKey,
        formnetRange: instanceCidr,
      });
    }
    // The GPUs this host has now (issue 20): placement of GPU instances reads them from the node record.
    const gpuUpdate = gpuRecordUpdate(store.views().nodes.find((n) => n.id === key.publicKey)?.gpus, fingerprintGpus());
    if (gpuUpdate) store.author(key, 'node.update', gpuUpdate);

    // formnet: this node's WireGuard interface (in its namespace), peers kept equal to state.
    const formnetState = new StateFormnetAdapter({ store, nodeKey: key });
    const self = await formnetState.upsertMember({
      id: key.address,
      publicKey: key.publicKey,
      kind: 'node',
      wgPublicKey: wg.publicKey,
      ...(config.advertiseHost || config.publicAddress ? { endpoint: `${advertise}:${ports.wireguard}` } : {}),
    });
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
    cleanups.push(() => formnet.stop());
    const offFormnet = store.onAccepted((op) => {
      if (op.kind.startsWith('formnet.') || op.kind.startsWith('node.'))
        void formnet.reconcileNow().catch(() => undefined);
    });
    cleanups.push(() => offFormnet());
    const formnetApp = await createFormnetService({
      state: formnetState,
      logger,
      onChange: async () => {
        await formnet.reconcileNow();
      },
      dns: { server: config.host, port: ports.dns, domain: config.domain },
    });
    // What a developer tool on this host needs to attach a temporary peer (see `form ssh`), and committed
    // revisions (by sha256) for the other replicas' nodes: only registered nodes may fetch.
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
    await listen(formnetApp, config.host, ports.formnet, 'formnet');
    cleanups.push(() => formnetApp.close());
    await listenPublic(formnetApp, ports.formnet, 'formnet');

    // DNS: <name>.<domain> -> the instance's formnet addresses, from state.
    const dns: DnsResponder = await createDnsResponder({
      domain: config.domain,
      host: config.host,
      port: ports.dns,
      logger,
      records: (name) => {
        const fqdn = `${name}.${config.domain}`;
        const rec = store.views().dns.find((d) => d.name === fqdn || d.name === name);
        return rec ? rec.addresses : undefined;
      },
    });
    cleanups.push(() => dns.close());
    // The same names on the formnet address, port 53, for members' stock resolvers (a warning if it cannot bind).
    const formnetDns = await startFormnetDns({
      address: self.address,
      domain: config.domain,
      logger,
      records: (name) =>
        store.views().dns.find((d) => d.name === `${name}.${config.domain}` || d.name === name)?.addresses,
    });
    if (formnetDns) cleanups.push(() => formnetDns.close());

    const controller = new InstanceController({
      nodeKey: key,
      store,
      vmm: vmm.manager,
      formpacksDir: vmmConfig.formpacksDir,
      dataDir: config.dataDir,
      logger,
      nodeTimeoutMs: config.nodeTimeoutMs,
      peerApiHost: config.peerApiHost,
      autostopMinuteMs: config.autostopMinuteMs,
    });
    wakeReplica = (vmId) => controller.wake(vmId);
    const off = store.onAccepted(() => controller.kick());
    cleanups.push(() => off());
    controller.start();
    // Each replica's HEALTHCHECK, run by the node that holds it and reported as instance.health.
    const health = new ReplicaHealthMonitor({
      nodeKey: key,
      store,
      vmm: vmm.manager,
      logger,
      // formationd runs outside its namespace: checks must start inside it, where formnet is routed.
      ...(config.netns ? { transport: netnsTransport(config.netns) } : {}),
    });
    health.start();
    cleanups.push(() => health.close());

    // Liveness: signed presence gossiped every heartbeatMs (memory only at every node); other nodes
    // treat a node whose last presence or heartbeat is older than nodeTimeoutMs as gone and re-place
    // its replicas (see the controller). A durable node.heartbeat op is recorded at start and every
    // heartbeatOpMs, so the log keeps a "last seen" without one op per beat.
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
    cleanups.push(() => {
      clearInterval(heartbeat);
      clearInterval(heartbeatOp);
    });
    // Cleanups run last-in first-out: the controller stops reconciling, then records its replicas as stopped.
    cleanups.push(() => controller.markStopped());
    cleanups.push(() => controller.close());

    // Compute runtime, dashboard, attestation: optional, each skipped with a warning when it cannot run here.
    await startExtraServices({
      config,
      ports,
      key,
      store,
      vmm,
      logger,
      onClose: (fn) => {
        cleanups.push(fn);
      },
    });

    const info: NodeInfo & { nodeKey: string; tlsFingerprint: string | null } = {
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
      formnetAddress: self.address,
      instanceCidr,
      genesis: store.genesis ?? null,
      p2p: p2p.multiaddrs(),
      // What a developer checks `form kit init --node https://<publicAddress>` against.
      nodeKey: key.publicKey,
      publicAddress: config.publicAddress ?? null,
      tlsFingerprint: tls?.fingerprint ?? null,
    };
    writeAtomic(paths.pidFile, `${process.pid}\n`);
    writeAtomic(paths.infoFile, `${JSON.stringify(info, null, 2)}\n`);
    cleanups.unshift(() => {
      rmSync(paths.pidFile, { force: true });
      rmSync(paths.infoFile, { force: true });
    });
    if (config.netns) cleanups.push(() => removeLeakGuard(config.netns));
    log.info({ ports, accel: info.accel }, 'formationd ready');
    return { key, store, vmm, info, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The node's WireGuard key, kept in the data dir (0600) so its formnet identity survives restarts. */
function loadOrCreateWireGuardKey(path: string): WireGuardKeyPair {
  if (existsSync(path)) {
    return wireGuardKeyPairFromPrivate((JSON.parse(readFileSync(path, 'utf8')) as { privateKey: string }).privateKey);
  }
  const k = generateWireGuardKeyPair();
  writeFileSync(path, `${JSON.stringify({ privateKey: k.privateKey })}\n`, { mode: 0o600 });
  return k;
}

/**
 * A daemon that was killed leaves its wireguard-go behind with the interface. Deleting the interface
 * ends that wireguard-go (it exits when its TUN device goes away).
 */
function removeStaleWireGuard(name: string, netns: string | undefined): void {
  try {
    execFileSync('ip', [...(netns ? ['-n', netns] : []), 'link', 'del', name], { stdio: 'ignore' });
  } catch {
    // no such interface: nothing to clean
  }
}

/** Wait (bounded) for a bootstrap peer, then pull its ops: a joining node starts from the network's state. */
async function syncWithBootstrap(p2p: P2PNode, timeoutMs: number, log: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (p2p.peers().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (p2p.peers().length === 0) {
    log.warn({ timeoutMs }, 'no bootstrap node answered; starting from local state (sync continues in the background)');
    return;
  }
  const results = await p2p.syncAll().catch((err: unknown) => {
    log.warn({ err }, 'initial sync failed');
    return [];
  });
  log.info({ peers: results.length, accepted: results.reduce((a, r) => a + r.accepted, 0) }, 'synced with bootstrap');
}

async function listen(app: ApiServer, host: string, port: number, name: string): Promise<void> {
  try {
    await app.listen({ host, port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FormError(
      'UNAVAILABLE',
      `Cannot start the ${name} API on ${host}:${port}: ${code === 'EADDRINUSE' ? 'the port is in use' : (err as Error).message}`,
      {
        hint: code === 'EADDRINUSE' ? 'Is another node running (`form node status`)? Or use --port-offset.' : undefined,
      },
    );
  }
}
