import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyPair } from '@formation/identity';
import { isNodeHealthy, type PlacementNode, placeReplicas, vmNameFor } from '@formation/scheduler';
import type { Logger } from '@formation/service';
import type { InstanceView, StateStore } from '@formation/state';
import type { VmManager, VmView } from '@formation/vmm';
import {
  applyRevisionToDisk,
  fetchFormpack,
  fetchRevision,
  peerServiceUrl,
  pruneRevisionCache,
} from './replication.ts';

export interface ControllerOptions {
  nodeKey: KeyPair;
  store: StateStore;
  vmm: VmManager;
  formpacksDir: string;
  /** The node's data dir (VMs under vms/, fetched revisions under revisions/). */
  dataDir?: string;
  logger: Logger;
  /** A node whose last heartbeat is older than this is unhealthy: placement skips it (ms). */
  nodeTimeoutMs?: number;
  /** Host of other nodes' HTTP APIs (devnet: 127.0.0.1); default: their endpoint's host. */
  peerApiHost?: string | undefined;
  /** How often to reconcile even without new ops (ms). */
  intervalMs?: number;
  /** How long a booting instance may take to report ready (ms). */
  readyTimeoutMs?: number;
  /** How long to wait before retrying a failed instance (ms). */
  retryAfterMs?: number;
}

/** How long an entrypoint must run after boot before its replica counts as running (ms). */
const ENTRYPOINT_SETTLE_MS = 2000;

type ReplicaState = 'pending' | 'starting' | 'running' | 'stopped' | 'failed' | 'deleted';

/**
 * Makes this node do what the state says: for every instance placed here it claims the replica, boots
 * a VM from the Formpack, and reports `instance.status` ops (starting, running with the formnet IP,
 * failed with a reason) as signed state ops; deleted instances lose their VM. It reads VMs by name, so
 * a restarted daemon re-attaches instead of booting duplicates.
 */
export class InstanceController {
  private readonly o: ControllerOptions;
  private readonly log: Logger;
  private readonly busy = new Set<string>();
  private readonly failedAt = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(o: ControllerOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'controller' });
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.o.intervalMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  /** Reconcile soon (coalesced). Called on every accepted op. */
  kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.reconcile()
      .catch((err: unknown) => this.log.error({ err }, 'reconcile failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /**
   * Before the node stops its VMs (`form node down`): say so in state, so status never shows a
   * replica as running while its node is down. Started again with the node.
   */
  async markStopped(): Promise<void> {
    const views = this.o.store.views();
    for (const inst of views.instances) {
      const mine = inst.replicaSet.find((r) => r.node === this.me);
      if (!inst.deleted && (mine?.state === 'running' || mine?.state === 'starting')) {
        await this.report(inst, 'stopped', undefined, 'its node was stopped');
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private get me(): string {
    return this.o.nodeKey.publicKey;
  }

  /**
   * Nodes as placement sees them. Healthy = this node, or a node whose last heartbeat is recent
   * (within nodeTimeoutMs) and not draining: a node that stopped beating loses its replicas to others.
   */
  private placementNodes(): PlacementNode[] {
    const views = this.o.store.views();
    const timeout = this.o.nodeTimeoutMs ?? 30_000;
    const now = Date.now();
    return views.nodes.map((n) => ({
      id: n.id,
      capacity: n.capacity,
      used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
      healthy: isNodeHealthy(n, now, timeout, this.me),
    }));
  }

  /** Applied revisions per VM id (a replica that fetched a commit rather than making it). */
  private appliedFile(): string | null {
    return this.o.dataDir ? join(this.o.dataDir, 'node', 'applied-revisions.json') : null;
  }

  private applied(): Record<string, { revision: number; sha256: string }> {
    const f = this.appliedFile();
    if (!f || !existsSync(f)) return {};
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as Record<string, { revision: number; sha256: string }>;
    } catch {
      return {};
    }
  }

  private recordApplied(vmId: string, revision: number, sha256: string): void {
    const f = this.appliedFile();
    if (!f) return;
    const all = this.applied();
    all[vmId] = { revision, sha256 };
    writeFileSync(f, `${JSON.stringify(all, null, 2)}\n`);
  }

  /** Other nodes' service URLs, those listed in `prefer` first. */
  private peerUrls(service: 'pack' | 'formnet', prefer: string[] = []): string[] {
    const nodes = this.o.store.views().nodes.filter((n) => n.id !== this.me);
    nodes.sort((a, b) => (prefer.includes(a.id) ? 0 : 1) - (prefer.includes(b.id) ? 0 : 1));
    return nodes.map((n) => peerServiceUrl(n, service, this.o.peerApiHost)).filter((u): u is string => !!u);
  }

  async reconcile(): Promise<void> {
    const views = this.o.store.views();
    const nodes = this.placementNodes();
    const vms = this.o.vmm.list();
    for (const inst of views.instances) {
      if (this.busy.has(inst.id)) continue;
      const vm = vms.find((v) => v.name === vmNameFor(inst));
      const mine = inst.replicaSet.find((r) => r.node === this.me);
      if (inst.deleted) {
        if (vm) await this.guard(inst.id, () => this.remove(inst, vm));
        else if (mine && mine.state !== 'deleted') await this.report(inst, 'deleted');
        continue;
      }
      const placed = placeReplicas(inst, nodes).includes(this.me);
      if (!placed) {
        // Not (or no longer) one of this instance's nodes, e.g. its usual node came back after this
        // one stood in for it: the surplus replica goes, and says so.
        if (vm) await this.guard(inst.id, () => this.remove(inst, vm));
        else if (mine && (mine.state === 'running' || mine.state === 'starting' || mine.state === 'failed'))
          await this.report(inst, 'stopped', undefined, 'replica moved: this node is no longer placed for it');
        continue;
      }
      if (!mine) {
        await this.author('instance.claim', { instanceId: inst.id, node: this.me });
        continue;
      }
      if (vm && vm.source.kind === 'formpack' && vm.source.id !== inst.formpackId) {
        // Shipped a new Formpack under the same name: replace the VM with one of the new Formpack.
        await this.guard(inst.id, () => this.o.vmm.destroy(vm.id));
        continue;
      }
      if (inst.desired === 'stopped') {
        if (vm && (vm.state === 'running' || vm.state === 'paused')) {
          await this.guard(inst.id, async () => {
            await this.o.vmm.stop(vm.id);
            await this.report(inst, 'stopped');
          });
        } else if (mine.state !== 'stopped') await this.report(inst, 'stopped');
        continue;
      }
      if (vm && (vm.state === 'stopped' || vm.state === 'created' || vm.state === 'crashed')) {
        // Desired running but the VM is down (started again by its owner, the node restarted, or it
        // crashed): boot the same VM, so its disk keeps what was written and committed. Back off on failure.
        const failed = this.failedAt.get(inst.id);
        if (failed && Date.now() - failed < (this.o.retryAfterMs ?? 60_000)) continue;
        void this.guard(inst.id, () => this.restartVm(inst, vm));
        continue;
      }
      if (!vm) {
        const failed = this.failedAt.get(inst.id);
        if (failed && Date.now() - failed < (this.o.retryAfterMs ?? 60_000)) continue;
        void this.guard(inst.id, () => this.boot(inst));
        continue;
      }
      await this.observe(inst, vm);
    }
  }

  private async guard(id: string, fn: () => Promise<void>): Promise<void> {
    this.busy.add(id);
    try {
      await fn();
    } catch (err) {
      this.log.error({ err, instance: id }, 'instance action failed');
    } finally {
      this.busy.delete(id);
    }
  }

  private async boot(inst: InstanceView): Promise<void> {
    const manifest = join(this.o.formpacksDir, inst.formpackId, 'manifest.json');
    if (!existsSync(manifest)) {
      // Fetch it from a node that has it (nodes running a replica first), verified against its sha256s.
      await this.report(inst, 'starting');
      const views = this.o.store.views();
      const published = views.formpacks.find((f) => f.id === inst.formpackId)?.sha256s;
      const running = inst.replicaSet.filter((r) => r.state === 'running').map((r) => r.node);
      try {
        await fetchFormpack({
          id: inst.formpackId,
          sources: this.peerUrls('pack', running),
          formpacksDir: this.o.formpacksDir,
          published,
          logger: this.log,
        });
      } catch (err) {
        await this.fail(
          inst,
          `Formpack ${inst.formpackId.slice(0, 12)} is not on this node: ${(err as Error).message}`,
        );
        return;
      }
    }
    await this.report(inst, 'starting');
    // A committed instance starts from its latest revision (a replica placed after a commit, e.g. on
    // healing): fetch it first, create the VM without starting it, swap its overlay, then start.
    let revisionFile: string | undefined;
    if (inst.revision > 0 && inst.revisionHash && this.o.dataDir) {
      const at = inst.replicaSet.filter((r) => r.revision === inst.revision).map((r) => r.node);
      try {
        revisionFile = await fetchRevision({
          sources: this.peerUrls('formnet', at),
          sha256: inst.revisionHash,
          dataDir: this.o.dataDir,
          key: this.o.nodeKey,
          logger: this.log,
        });
      } catch (err) {
        this.log.warn(
          { err, instance: inst.id },
          'latest revision not fetched: booting the Formpack, will apply it later',
        );
      }
    }
    let vm: VmView;
    try {
      vm = await this.o.vmm.create(
        { formpack: inst.formpackId, name: vmNameFor(inst), resources: inst.resources, start: !revisionFile },
        inst.ownerAddress,
      );
      if (revisionFile && this.o.dataDir) {
        await applyRevisionToDisk(join(this.o.dataDir, 'vms', vm.id, 'qemu', 'disk.qcow2'), revisionFile);
        this.recordApplied(vm.id, inst.revision, inst.revisionHash as string);
        vm = await this.o.vmm.start(vm.id);
      }
    } catch (err) {
      await this.fail(inst, (err as Error).message);
      return;
    }
    this.log.info({ instance: inst.id, vm: vm.id }, 'instance vm started');
    try {
      vm = await this.o.vmm.waitReady(vm.id, this.o.readyTimeoutMs ?? 180_000);
    } catch (err) {
      const console = ((err as { details?: { console?: string } }).details?.console ?? '').trim().split('\n').slice(-5);
      await this.fail(inst, `${(err as Error).message}${console.length ? ` — console: ${console.join(' | ')}` : ''}`);
      return;
    }
    // `observe` reports running once the entrypoint has settled.
    this.kick();
  }

  /** Keep the reported status in line with the VM: ready -> running, crashed -> failed (with why). */
  private async observe(inst: InstanceView, vm: VmView): Promise<void> {
    const mine = inst.replicaSet.find((r) => r.node === this.me);
    const ip = ipOf(vm);
    if (vm.ready && (vm.state === 'running' || vm.state === 'paused')) {
      const ep = vm.health?.entrypoint;
      if (ep?.status === 'exited' && ep.restarts >= 3) {
        if (mine?.state !== 'failed') {
          const log = await this.entrypointLog(vm);
          await this.fail(
            inst,
            `the entrypoint keeps exiting (code ${ep.code}, ${ep.restarts} restarts)${log ? `: ${log}` : ''}`,
          );
        }
        return;
      }
      // Running means the app runs, not only the VM: with an ENTRYPOINT, wait until the guest reports
      // it running without having restarted (a crash loop ends as FAILURE above instead).
      // "Running" must hold for a moment: a crashing entrypoint looks running right after boot.
      if (this.hasEntrypoint(inst.formpackId) && mine?.state !== 'running') {
        const readyAt = Date.parse(vm.readyAt ?? '') || Date.now();
        const checkedAt = Date.parse(vm.health?.checkedAt ?? '') || 0;
        const stable = ep?.status === 'running' && ep.restarts === 0 && checkedAt - readyAt >= ENTRYPOINT_SETTLE_MS;
        if (!stable) {
          if (Date.now() - readyAt >= ENTRYPOINT_SETTLE_MS && checkedAt - readyAt < ENTRYPOINT_SETTLE_MS) {
            await this.o.vmm.checkHealth().catch(() => undefined);
          }
          return;
        }
      }
      // The replica is at the instance's revision when its own disk produced that commit, or when it
      // fetched and applied it. Otherwise it fetches the revision from a replica that is at it.
      const applied = this.applied()[vm.id];
      const atRevision =
        inst.revision === 0 ||
        vm.revisions.some((r) => r.sha256 === inst.revisionHash) ||
        applied?.sha256 === inst.revisionHash;
      if (!atRevision && inst.revisionHash && this.o.dataDir) {
        const failed = this.failedAt.get(`rev:${inst.id}`);
        if (!failed || Date.now() - failed > 10_000) {
          void this.guard(inst.id, () => this.applyRevision(inst, vm));
          return;
        }
      }
      const revision = atRevision ? inst.revision : (applied?.revision ?? mine?.revision ?? 0);
      if (mine?.state !== 'running' || mine.formnetIp !== ip || mine.revision !== revision) {
        await this.report(inst, 'running', ip, undefined, revision);
      }
      return;
    }
  }

  /** Bring this replica to the instance's committed revision: fetch (verified), stop, swap the overlay, start. */
  private async applyRevision(inst: InstanceView, vm: VmView): Promise<void> {
    const dataDir = this.o.dataDir as string;
    const hash = inst.revisionHash as string;
    const at = inst.replicaSet.filter((r) => r.revision === inst.revision && r.node !== this.me).map((r) => r.node);
    let file: string;
    try {
      file = await fetchRevision({
        sources: this.peerUrls('formnet', at),
        sha256: hash,
        dataDir,
        key: this.o.nodeKey,
        logger: this.log,
      });
    } catch (err) {
      this.failedAt.set(`rev:${inst.id}`, Date.now());
      this.log.warn({ err, instance: inst.id, revision: inst.revision }, 'revision not fetched yet');
      return;
    }
    const t0 = Date.now();
    await this.report(inst, 'starting', undefined, `applying revision ${inst.revision}`);
    try {
      await this.o.vmm.stop(vm.id);
      await applyRevisionToDisk(join(dataDir, 'vms', vm.id, 'qemu', 'disk.qcow2'), file);
      this.recordApplied(vm.id, inst.revision, hash);
      await this.o.vmm.start(vm.id);
      const ready = await this.o.vmm.waitReady(vm.id, this.o.readyTimeoutMs ?? 180_000);
      this.log.info({ instance: inst.id, revision: inst.revision, ms: Date.now() - t0 }, 'revision applied');
      await this.report(inst, 'running', ipOf(ready), undefined, inst.revision);
      const keep = new Set(
        this.o.store
          .views()
          .instances.map((i) => i.revisionHash)
          .filter((h): h is string => !!h),
      );
      pruneRevisionCache(dataDir, keep);
    } catch (err) {
      this.failedAt.set(`rev:${inst.id}`, Date.now());
      await this.fail(inst, `cannot apply revision ${inst.revision}: ${(err as Error).message}`);
    }
  }

  private async restartVm(inst: InstanceView, vm: VmView): Promise<void> {
    await this.report(inst, 'starting');
    try {
      await this.o.vmm.start(vm.id);
      await this.o.vmm.waitReady(vm.id, this.o.readyTimeoutMs ?? 180_000);
      // `observe` reports running once the entrypoint has settled.
      this.kick();
    } catch (err) {
      await this.fail(inst, `cannot start its VM again: ${(err as Error).message}`);
    }
  }

  private readonly entrypoints = new Map<string, boolean>();

  /** Whether a Formpack defines an ENTRYPOINT (read once from its manifest). */
  private hasEntrypoint(formpackId: string): boolean {
    let has = this.entrypoints.get(formpackId);
    if (has === undefined) {
      try {
        const m = JSON.parse(readFileSync(join(this.o.formpacksDir, formpackId, 'manifest.json'), 'utf8')) as {
          formfile?: { entrypoint?: unknown };
        };
        has = Boolean(m.formfile?.entrypoint);
      } catch {
        has = false;
      }
      this.entrypoints.set(formpackId, has);
    }
    return has;
  }

  private async entrypointLog(vm: VmView): Promise<string> {
    try {
      const r = await this.o.vmm.exec(vm.id, '/bin/sh', ['-c', 'tail -n 5 /var/log/form/entrypoint.log'], 5000);
      return r.stdout.trim().split('\n').join(' | ').slice(0, 300);
    } catch {
      return '';
    }
  }

  private async remove(inst: InstanceView, vm: VmView): Promise<void> {
    await this.o.vmm.destroy(vm.id);
    this.log.info({ instance: inst.id, vm: vm.id }, 'instance vm removed');
    if (inst.deleted) await this.report(inst, 'deleted');
    else await this.report(inst, 'stopped', undefined, 'replica moved: this node is no longer placed for it');
  }

  private async fail(inst: InstanceView, reason: string): Promise<void> {
    this.failedAt.set(inst.id, Date.now());
    this.log.warn({ instance: inst.id, reason }, 'instance failed');
    await this.report(inst, 'failed', undefined, reason);
  }

  private async report(
    inst: InstanceView,
    state: ReplicaState,
    formnetIp?: string,
    reason?: string,
    revision?: number,
  ): Promise<void> {
    const mine = inst.replicaSet.find((r) => r.node === this.me);
    const body: Record<string, unknown> = {
      instanceId: inst.id,
      node: this.me,
      state,
      revision: revision ?? mine?.revision ?? 0,
    };
    if (formnetIp) body.formnetIp = formnetIp;
    if (reason) body.reason = reason.slice(0, 500);
    await this.author('instance.status', body);
  }

  private async author(kind: 'instance.status' | 'instance.claim', body: Record<string, unknown>): Promise<void> {
    try {
      this.o.store.author(this.o.nodeKey, kind, body);
    } catch (err) {
      this.log.error({ err, kind }, 'could not record op');
    }
  }
}

function ipOf(vm: VmView): string | undefined {
  const ip = vm.network.ip?.split('/')[0];
  return ip && /^\d+\.\d+\.\d+\.\d+$/.test(ip) && vm.network.mode === 'tap' ? ip : undefined;
}
