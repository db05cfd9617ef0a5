import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerAttestRoutes } from '@formation/attest';
import {
  generateWireGuardKeyPair,
  loadOrCreateKey,
  type WireGuardKeyPair,
  wireGuardKeyPairFromPrivate,
} from '@formation/identity';
import { allocateNodeSlice, installLeakGuard } from '@formation/net';
import { createP2PNode, type P2PNode, peerIdOfKey } from '@formation/p2p';
import { createPackService } from '@formation/pack';
import { vmNameFor } from '@formation/scheduler';
import { type Logger, loadOrCreateTlsIdentity, setApiIdentity } from '@formation/service';
import { createStateService, openStateStore, PRESENCE_TOPIC } from '@formation/state';
import { createVmmService, fingerprintGpus, loadVmmConfig } from '@formation/vmm';
import { mayFetchFormpack, startNetwork, waitForAdmission } from './admission.ts';
import type { DaemonComponent } from './daemon-context.ts';
import { listenApi, need } from './daemon-context.ts';
import { gpuRecordUpdate } from './gpu-report.ts';
import { deleteNetns, ensureNetns } from './netns.ts';

/** The node key, and the TLS identity of the public APIs (bound to the node key: clients pin it, no CA). */
export const identityComponent: DaemonComponent = {
  name: 'identity',
  async start(ctx) {
    const { config, paths, log } = ctx;
    const key = await loadOrCreateKey(paths.keyFile);
    ctx.parts.key = key;
    log.info({ node: key.address, dataDir: config.dataDir, netns: config.netns ?? null }, 'formationd starting');
    const tls = config.publicAddress ? await loadOrCreateTlsIdentity(paths.dir, key) : null;
    ctx.parts.tls = tls;
    if (tls)
      log.info(
        { publicAddress: config.publicAddress, tlsFingerprint: tls.fingerprint, created: tls.created },
        'TLS identity',
      );
  },
};

/**
 * The node's network namespace (with `config.netns`). We own it when we created it, also across a crash
 * and restart (remembered in a file), so `form node down` removes it; one made by someone else (the
 * devnet) is kept.
 */
export const netnsComponent: DaemonComponent = {
  name: 'netns',
  async start({ config, paths, log }, onStop) {
    if (!config.netns) return;
    const netns = config.netns;
    const ownedFile = join(paths.dir, 'netns-owned');
    const ownedBefore = existsSync(ownedFile) && readFileSync(ownedFile, 'utf8').trim() === netns;
    const created = await ensureNetns(netns);
    if (created) writeFileSync(ownedFile, `${netns}\n`);
    if (created || ownedBefore) {
      onStop(async () => {
        await deleteNetns(netns);
        rmSync(ownedFile, { force: true });
      });
    }
    await installLeakGuard(netns).catch((err: unknown) => log.warn({ err }, 'leak guard in netns'));
  },
};

/** State: the signed op log everything else records into, and its API. */
export const stateComponent: DaemonComponent = {
  name: 'state',
  async start(ctx, onStop) {
    const { config, paths, logger } = ctx;
    const key = need(ctx, 'key');
    const store = openStateStore({
      path: paths.stateDb,
      logger,
      domain: config.domain,
      ...(config.genesis ? { genesis: config.genesis } : {}),
    });
    ctx.parts.store = store;
    onStop(() => store.close());
    const stateApp = await createStateService({ store, logger });
    setApiIdentity(stateApp, key.publicKey); // signed requests to this node's APIs must name this node
    await listenApi(ctx, onStop, stateApp, ctx.ports.state, 'state', () => stateApp.close());
  },
};

/**
 * p2p: gossip of accepted ops and anti-entropy with the nodes we join (a network of one when none).
 * Started before this node registers, and synced with the bootstrap nodes first, so the slice and
 * formnet address it picks are chosen knowing the network's (first allocation wins, but a node that
 * picks a free one avoids the retry).
 */
export const p2pComponent: DaemonComponent = {
  name: 'p2p',
  async start(ctx, onStop) {
    const { config, ports, logger } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
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
    ctx.parts.p2p = p2p;
    onStop(() => p2p.stop());
    if (config.join.length > 0) await syncWithBootstrap(p2p, config.joinSyncTimeoutMs, ctx.log);
  },
};

/**
 * The node's slice of formnet for its instances: what it was admitted (or registered) with before,
 * else configured, else the first free one. The first node of a new network writes its genesis and
 * admits itself; a joining node waits here until an admin admits it (admission.ts).
 */
export const admissionComponent: DaemonComponent = {
  name: 'admission',
  async start(ctx) {
    const { config, paths, logger, log } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    ctx.parts.registeredBefore = Boolean(store.viewIndex.registrationOf(key.publicKey));
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
    ctx.parts.instanceCidr = await waitForAdmission({
      store,
      key,
      joining: config.join.length > 0,
      proposed,
      logger,
      timeoutMs: config.admissionTimeoutMs,
    });
    ctx.parts.wg = loadOrCreateWireGuardKey(paths.wgKeyFile);
    // A public address is what other hosts reach: it implies advertiseHost.
    ctx.parts.advertise = config.advertiseHost ?? config.publicAddress ?? config.host;
  },
};

/**
 * Pack: builds Formpacks into <dataDir>/formpacks, where the VMM boots them from. The base image cache
 * is shared by every node on the host (FORM_PACK_CACHE), so a devnet builds it once.
 */
export const packComponent: DaemonComponent = {
  name: 'pack',
  async start(ctx, onStop) {
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const pack = await createPackService({
      dataDir: ctx.config.dataDir,
      cacheDir: process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache',
      logger: ctx.logger,
      // Besides the owner, only an admitted node holding a claim on a live instance of that owner
      // running this Formpack may fetch its artifacts (whole disks, password hashes) and ENV values.
      authorizeFetch: (signer, formpackId, owner) => mayFetchFormpack(store.views(), signer, formpackId, owner),
    });
    setApiIdentity(pack.app, key.publicKey);
    await listenApi(ctx, onStop, pack.app, ctx.ports.pack, 'pack', () => pack.close());
  },
};

/**
 * VMM: instances on a bridge in the node's namespace (TAP mode) when it has one, else user-mode NAT;
 * attestation (measured boot reports, sealed secrets) lives on its API, beside the VMs it measures.
 */
export const vmmComponent: DaemonComponent = {
  name: 'vmm',
  async start(ctx, onStop) {
    const { config, ports, logger } = ctx;
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const instanceCidr = need(ctx, 'instanceCidr');
    const vmmConfig = loadVmmConfig(process.env, {
      apiPort: ports.vmm,
      apiHost: config.host,
      vmDir: join(config.dataDir, 'vms'),
      formpacksDir: join(config.dataDir, 'formpacks'),
      imagesDir: join(config.dataDir, 'images'),
      bootSnapshots: config.bootSnapshots,
      bootSnapshotMaxMiB: config.bootSnapshotMaxMiB,
      bootStandby: config.bootStandby,
      network: config.netns
        ? { mode: 'tap', netns: config.netns, createNetns: false, bridge: 'formbr0', cidr: instanceCidr }
        : { mode: 'user', createNetns: false, bridge: 'formbr0', cidr: instanceCidr },
    });
    ctx.parts.vmmConfig = vmmConfig;
    // An instance's VM belongs to the instance's owner (the controller boots it with the node key).
    const instanceOwnerOf = (vm: { name: string; owner: string | null }): string | null =>
      vm.owner ?? store.views().instances.find((i) => !i.deleted && vmNameFor(i) === vm.name)?.ownerAddress ?? null;
    const vmm = await createVmmService({
      config: vmmConfig,
      logger,
      // Scale to zero: a connection to a suspended replica wakes it once the controller agrees.
      onWake: (vmId) => (ctx.wakeReplica ? ctx.wakeReplica(vmId) : Promise.reject(new Error('the node is starting'))),
      access: { operators: [key.publicKey], ownerOf: instanceOwnerOf },
      // Guests resolve <name>.<domain> through the forwarder on their gateway (the rest goes upstream).
      dns: {
        domain: config.domain,
        records: (name) =>
          store.views().dns.find((d) => d.name === `${name}.${config.domain}` || d.name === name)?.addresses,
      },
      routes: (app, manager) =>
        registerAttestRoutes(app, {
          nodeKey: key,
          vmm: manager,
          logger,
          ownerOf: instanceOwnerOf,
        }),
    });
    ctx.parts.vmm = vmm;
    setApiIdentity(vmm.app, key.publicKey);
    // `form node down` (SIGTERM) stops the VMs cleanly; a crash leaves them running for re-attach.
    await listenApi(ctx, onStop, vmm.app, ports.vmm, 'vmm', () => vmm.close({ stopVms: true }));
  },
};

/**
 * Register this node in state once (capacity from the VMM's accounting), and the GPUs this host has
 * now (issue 20): placement of GPU instances reads them from the node record.
 */
export const registrationComponent: DaemonComponent = {
  name: 'registration',
  start(ctx) {
    const key = need(ctx, 'key');
    const store = need(ctx, 'store');
    const vmm = need(ctx, 'vmm');
    if (!need(ctx, 'registeredBefore')) {
      store.author(key, 'node.register', {
        name: `node-${key.address.slice(2, 10)}`,
        capacity: vmm.manager.capacity().capacity,
        endpoint: `${need(ctx, 'advertise')}:${ctx.ports.p2p}`,
        p2pPeerId: peerIdOfKey(key).toString(),
        wgPublicKey: need(ctx, 'wg').publicKey,
        formnetRange: need(ctx, 'instanceCidr'),
      });
    }
    const gpuUpdate = gpuRecordUpdate(store.views().nodes.find((n) => n.id === key.publicKey)?.gpus, fingerprintGpus());
    if (gpuUpdate) store.author(key, 'node.update', gpuUpdate);
  },
};

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
export function removeStaleWireGuard(name: string, netns: string | undefined): void {
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
