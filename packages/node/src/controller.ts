import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyPair } from '@formation/identity';
import { canTransitionReplica, FormError, type ReportedReplicaState, replicaStateOf } from '@formation/interface';
import { placementNodesFrom, vmNameFor } from '@formation/scheduler';
import type { Logger } from '@formation/service';
import type { InstanceView, StateStore } from '@formation/state';
import type { VmManager, VmView } from '@formation/vmm';
import { AppliedRevisions } from './applied-revisions.ts';
import { hasKeptDataDisk, keepDataDisk, restoreDataDisk } from './data-carry.ts';
import {
  type Action,
  ENTRYPOINT_SETTLE_MS,
  idleSince,
  ipOf,
  myReplica,
  plan,
  planNodeStopped,
  planWake,
} from './plan.ts';
import { fetchFormpack, fetchRevision, type PeerSource, peerServiceUrl, pruneRevisionCache } from './replication.ts';
import { releaseOfFormpack, revisionBelongsHere } from './rollout.ts';

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
  /** Length of an autostop minute (ms; FORM_AUTOSTOP_MINUTE_MS shortens it for tests). */
  autostopMinuteMs?: number;
  /** Rolling updates: how long a replica is out of rotation before its old VM goes (ms, UPDATE_DRAIN_MS). */
  drainMs?: number;
}

/** Rolling updates: a replacing replica reports `starting` this long before its old VM is destroyed (ms). */
export const UPDATE_DRAIN_MS = Number(process.env.FORM_UPDATE_DRAIN_MS) || 2000;

/**
 * Makes this node do what the state says: for every instance placed here it claims the replica, boots
 * a VM from the Formpack, and reports `instance.status` ops (starting, running with the formnet IP,
 * failed with a reason) as signed state ops; deleted instances lose their VM. It reads VMs by name, so
 * a restarted daemon re-attaches instead of booting duplicates.
 *
 * Each round is plan + execute: `plan()` (plan.ts, pure, table-tested) decides one `Action` per
 * instance from the state view, this node's VM and its own failure timestamps; `execute()` carries it
 * out against the VMM and the store. Reports outside the replica lifecycle are never authored.
 */
export class InstanceController {
  private readonly o: ControllerOptions;
  private readonly log: Logger;
  private readonly busy = new Set<string>();
  private readonly failedAt = new Map<string, number>();
  /** The Formpack each instance failed with (its back-off does not hold for another one). */
  private readonly failedFor = new Map<string, string>();
  /** Scale to zero: per VM, its traffic counters' total and since when they have not moved. */
  private readonly idle = new Map<string, { bytes: number; since: number }>();
  private readonly appliedRevisions: AppliedRevisions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(o: ControllerOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'controller' });
    this.appliedRevisions = new AppliedRevisions(o.dataDir);
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
    for (const inst of planNodeStopped(this.o.store.views().instances, this.me)) {
      await this.report(inst, 'stopped', undefined, 'its node was stopped');
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

  /** Other nodes' service URLs with their node keys (https is pinned to them), those listed in `prefer` first. */
  private peerUrls(service: 'pack' | 'formnet', prefer: string[] = []): PeerSource[] {
    const nodes = this.o.store.views().nodes.filter((n) => n.id !== this.me);
    nodes.sort((a, b) => (prefer.includes(a.id) ? 0 : 1) - (prefer.includes(b.id) ? 0 : 1));
    return nodes.flatMap((n) => {
      const url = peerServiceUrl(n, service, this.o.peerApiHost);
      return url ? [{ url, nodeKey: n.id }] : [];
    });
  }

  /** One round: for every instance, plan what to do here (pure, `plan.ts`), then do it. */
  async reconcile(): Promise<void> {
    const views = this.o.store.views();
    const now = Date.now();
    const nodes = placementNodesFrom(views.nodes, now, this.o.nodeTimeoutMs ?? 30_000, this.me);
    const vms = this.o.vmm.list();
    for (const inst of views.instances) {
      const vm = vms.find((v) => v.name === vmNameFor(inst));
      const idleMs = await this.idleMs(inst, vm, now);
      const action = plan({
        instance: inst,
        me: this.me,
        nodes,
        vm,
        now: Date.now(),
        busy: this.busy.has(inst.id),
        // The back-off after a failure holds only for the Formpack that failed: a rollback boots at once.
        failedAt: this.failedFor.get(inst.id) === inst.formpackId ? this.failedAt.get(inst.id) : undefined,
        retryAfterMs: this.o.retryAfterMs ?? 60_000,
        revisionFailedAt: this.failedAt.get(`rev:${inst.id}`),
        applied: vm && inst.revision > 0 && !inst.deleted ? this.appliedRevisions.get(vm.id) : undefined,
        hasEntrypoint: !inst.deleted && vm !== undefined && this.hasEntrypoint(inst.formpackId),
        canFetchRevisions: this.o.dataDir !== undefined,
        idleMs,
        minuteMs: this.o.autostopMinuteMs ?? (Number(process.env.FORM_AUTOSTOP_MINUTE_MS) || 60_000),
        readyTimeoutMs: this.o.readyTimeoutMs ?? 180_000,
        vmRelease: vm?.source.kind === 'formpack' && !inst.deleted ? releaseOfFormpack(inst, vm.source.id) : undefined,
      });
      await this.execute(inst, action);
    }
  }

  /** Carry out one planned action. Boots, restarts and revision swaps run in the background (guarded). */
  private async execute(inst: InstanceView, a: Action): Promise<void> {
    switch (a.kind) {
      case 'nothing':
        return;
      case 'claim':
        return this.author('instance.claim', { instanceId: inst.id, node: this.me });
      case 'report':
        return this.report(inst, a.state, a.formnetIp, a.reason, a.revision);
      case 'remove':
        return this.guard(inst.id, async () => {
          await this.o.vmm.destroy(a.vmId);
          this.log.info({ instance: inst.id, vm: a.vmId }, 'instance vm removed');
          await this.report(inst, a.report, undefined, a.reason);
        });
      case 'replace-formpack':
        // A rolling update's turn: out of rotation first (status and ingress route to running replicas
        // only), a short drain for requests in flight, then the old VM goes; a new one boots next round.
        void this.guard(inst.id, async () => {
          await this.report(inst, 'starting', undefined, `replacing it with release ${inst.release ?? 1}`);
          await new Promise((r) => setTimeout(r, this.o.drainMs ?? UPDATE_DRAIN_MS));
          // /data goes with the replica (data-carry.ts): a clean stop, then its disk is moved aside.
          if (this.o.dataDir) {
            await this.o.vmm.stop(a.vmId).catch(() => undefined);
            await keepDataDisk(this.o.vmm, this.o.dataDir, a.vmId, inst.id).catch((err: unknown) =>
              this.log.warn({ err, instance: inst.id, vm: a.vmId }, 'data disk not kept: its VM did not stop'),
            );
          }
          await this.o.vmm.destroy(a.vmId);
          this.log.info({ instance: inst.id, vm: a.vmId, release: inst.release }, 'replica replaced for an update');
          this.kick();
        });
        return;
      case 'stop':
        return this.guard(inst.id, async () => {
          await this.o.vmm.stop(a.vmId);
          await this.report(inst, 'stopped', undefined, a.reason);
        });
      case 'restart':
        void this.guard(inst.id, () => this.restartVm(inst, a.vmId));
        return;
      case 'boot':
        void this.guard(inst.id, () => this.boot(inst));
        return;
      case 'apply-revision':
        void this.guard(inst.id, () => this.applyRevision(inst, a.vmId));
        return;
      case 'fail-entrypoint': {
        const log = await this.entrypointLog(a.vmId);
        return this.fail(
          inst,
          `the entrypoint keeps exiting (code ${a.code}, ${a.restarts} restarts)${log ? `: ${log}` : ''}`,
        );
      }
      case 'suspend':
        return this.guard(inst.id, async () => {
          const vm = await this.o.vmm.suspend(a.vmId);
          this.idle.delete(a.vmId);
          this.log.info({ instance: inst.id, vm: a.vmId, bytes: vm.suspended?.bytes }, 'idle replica suspended');
          await this.report(inst, 'suspended', ipOf(vm), 'idle: suspended to disk');
        });
      case 'wake':
        return this.guard(inst.id, () =>
          this.wake(a.vmId).catch((err) => this.log.warn({ instance: inst.id, err }, 'cannot wake the replica')),
        );
      case 'check-health':
        // Its verdict is what the plan waits for: plan again now, not at the next tick. (A round that
        // succeeded recorded a check after the settle time, so the plan does not ask for it again.)
        try {
          await this.o.vmm.checkHealth();
        } catch {
          return;
        }
        this.kick();
        return;
      default: {
        const never: never = a;
        throw new Error(`unknown action ${JSON.stringify(never)}`);
      }
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
      // The hashes the instance's OWNER published (anyone may publish under any Formpack id; only the
      // owner's own publish binds the bytes).
      const published = inst.formpack?.sha256s;
      const running = inst.replicaSet.filter((r) => r.state === 'running').map((r) => r.node);
      try {
        await fetchFormpack({
          id: inst.formpackId,
          sources: this.peerUrls('pack', running),
          formpacksDir: this.o.formpacksDir,
          published,
          key: this.o.nodeKey,
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
    if (inst.revision > 0 && inst.revisionHash && this.o.dataDir && revisionBelongsHere(inst)) {
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
    // A replica replaced by a rolling update keeps its data disk (data-carry.ts).
    const carried = hasKeptDataDisk(this.o.dataDir, inst.id);
    let vm: VmView;
    try {
      vm = await this.o.vmm.create(
        {
          formpack: inst.formpackId,
          name: vmNameFor(inst),
          resources: inst.resources,
          start: !revisionFile && !carried,
          ...(inst.gpu ? { gpu: inst.gpu } : {}),
        },
        inst.ownerAddress,
      );
      if (revisionFile && this.o.dataDir) {
        vm = await this.o.vmm.replaceDisk(vm.id, revisionFile);
        this.appliedRevisions.record(vm.id, inst.revision, inst.revisionHash as string);
      }
      if (carried && this.o.dataDir) await restoreDataDisk(this.o.vmm, this.o.dataDir, vm.id, inst.id);
      if ((revisionFile || carried) && this.o.dataDir) vm = await this.o.vmm.start(vm.id);
    } catch (err) {
      await this.fail(inst, (err as Error).message);
      return;
    }
    this.log.info({ instance: inst.id, vm: vm.id }, 'instance vm started');
    // Its address is known now: say it while it starts, so its developer can reach the app the moment
    // it listens (names and the ingress still route to running replicas only).
    const ip = ipOf(vm);
    if (ip) await this.report(inst, 'starting', ip);
    try {
      vm = await this.o.vmm.waitReady(vm.id, this.o.readyTimeoutMs ?? 180_000);
    } catch (err) {
      const console = ((err as { details?: { console?: string } }).details?.console ?? '').trim().split('\n').slice(-5);
      await this.fail(inst, `${(err as Error).message}${console.length ? ` — console: ${console.join(' | ')}` : ''}`);
      return;
    }
    // `observe` reports running once the entrypoint has settled.
    this.kick();
    this.kickAfterSettle();
  }

  /**
   * Plan again the moment a ready VM's entrypoint has had its settle time, instead of at the next
   * 1 s tick (with the health round it asks for, that tick cost up to ~1.5 s of every ship → running).
   */
  private kickAfterSettle(): void {
    setTimeout(() => this.kick(), ENTRYPOINT_SETTLE_MS + 10).unref();
  }

  /** Bring this replica to the instance's committed revision: fetch (verified), stop, swap the overlay, start. */
  private async applyRevision(inst: InstanceView, vmId: string): Promise<void> {
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
      await this.o.vmm.stop(vmId);
      await this.o.vmm.replaceDisk(vmId, file);
      this.appliedRevisions.record(vmId, inst.revision, hash);
      await this.o.vmm.start(vmId);
      const ready = await this.o.vmm.waitReady(vmId, this.o.readyTimeoutMs ?? 180_000);
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

  /**
   * How long the instance's VM has had no traffic (ms); undefined without autostop or counters. It counts
   * from when its replica is reported running: a boot is not idleness (else a replica whose boot took
   * longer than its autostop was suspended as soon as it was reported running).
   */
  private async idleMs(inst: InstanceView, vm: VmView | undefined, now: number): Promise<number | undefined> {
    const running = myReplica(inst, this.me)?.state === 'running';
    if (!vm || vm.state !== 'running' || !running || !((inst.autostopMinutes ?? 0) > 0)) {
      if (vm) this.idle.delete(vm.id);
      return undefined;
    }
    const counters = await this.o.vmm.traffic(vm.id).catch(() => undefined);
    if (!counters) return undefined;
    const next = idleSince(this.idle.get(vm.id), counters, now);
    this.idle.set(vm.id, next);
    return now - next.since;
  }

  /**
   * A connection came for this node's suspended VM `vmId` (the VMM's wake gate holds it): wake it when
   * the planner agrees (`planWake`), then report it running. Rejects when it must stay suspended.
   */
  async wake(vmId: string): Promise<void> {
    const vm = this.o.vmm.list().find((v) => v.id === vmId);
    const inst = vm ? this.o.store.views().instances.find((i) => vmNameFor(i) === vm.name) : undefined;
    const d = planWake(inst, this.me, vm);
    if (!d.wake) throw new FormError('VM_BAD_STATE', `Cannot wake VM ${vmId}: ${d.why}`);
    const t0 = Date.now();
    await this.o.vmm.resume(vmId);
    this.idle.delete(vmId);
    this.log.info({ instance: inst?.id, vm: vmId, ms: Date.now() - t0 }, 'suspended replica woken by a connection');
    // Its entrypoint ran when it was suspended and runs on: running again, no settle time.
    if (inst) await this.report(inst, 'running', vm ? ipOf(vm) : undefined);
    this.kick();
  }

  private async restartVm(inst: InstanceView, vmId: string): Promise<void> {
    await this.report(inst, 'starting');
    try {
      await this.o.vmm.start(vmId);
      await this.o.vmm.waitReady(vmId, this.o.readyTimeoutMs ?? 180_000);
      // `observe` reports running once the entrypoint has settled.
      this.kick();
      this.kickAfterSettle();
    } catch (err) {
      await this.fail(inst, `cannot start its VM again: ${(err as Error).message}`);
    }
  }

  private readonly entrypoints = new Map<string, boolean>();

  /** Whether a Formpack defines an ENTRYPOINT (read once from its manifest, once it is here). */
  private hasEntrypoint(formpackId: string): boolean {
    let has = this.entrypoints.get(formpackId);
    if (has === undefined) {
      const manifest = join(this.o.formpacksDir, formpackId, 'manifest.json');
      if (!existsSync(manifest)) return false;
      try {
        const m = JSON.parse(readFileSync(manifest, 'utf8')) as {
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

  private async entrypointLog(vmId: string): Promise<string> {
    try {
      const r = await this.o.vmm.exec(vmId, '/bin/sh', ['-c', 'tail -n 5 /var/log/form/entrypoint.log'], 5000);
      return r.stdout.trim().split('\n').join(' | ').slice(0, 300);
    } catch {
      return '';
    }
  }

  private async fail(inst: InstanceView, reason: string): Promise<void> {
    this.failedAt.set(inst.id, Date.now());
    this.failedFor.set(inst.id, inst.formpackId);
    this.log.warn({ instance: inst.id, reason }, 'instance failed');
    await this.report(inst, 'failed', undefined, reason);
  }

  private async report(
    inst: InstanceView,
    state: ReportedReplicaState,
    formnetIp?: string,
    reason?: string,
    revision?: number,
  ): Promise<void> {
    const mine = myReplica(inst, this.me);
    const from = mine ? replicaStateOf(mine.state) : 'claimed';
    if (!canTransitionReplica(from, state)) {
      // State would refuse the op (the replica lifecycle is closed): say so here instead of authoring it.
      this.log.warn({ instance: inst.id, from, to: state }, 'replica state change not allowed, not reported');
      return;
    }
    const body: Record<string, unknown> = {
      instanceId: inst.id,
      node: this.me,
      state,
      revision: revision ?? mine?.revision ?? 0,
    };
    if (formnetIp) body.formnetIp = formnetIp;
    if (reason) body.reason = reason.slice(0, 500);
    // The release this replica runs (its VM's Formpack; the target while none exists yet).
    const vm = this.o.vmm.list().find((v) => v.name === vmNameFor(inst));
    const release = vm?.source.kind === 'formpack' ? releaseOfFormpack(inst, vm.source.id) : (inst.release ?? 1);
    if (release !== undefined) body.release = release;
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
