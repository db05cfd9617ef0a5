// Replica health reported in state (issues 19/20), the I/O half: runs the HEALTHCHECK of this node's
// own replicas (HTTP/TCP over the node's bridge to the guest's formnet address, CMD through the guest
// agent's exec) with @formation/ingress's prober, and signs `instance.health` when a verdict changes.
import type { KeyPair } from '@formation/identity';
import { type CommandRunner, createProber, type Prober, type ProbeTransport } from '@formation/ingress';
import { vmNameFor } from '@formation/scheduler';
import type { Logger } from '@formation/service';
import type { StateStore } from '@formation/state';
import type { VmManager } from '@formation/vmm';
import { type HealthTarget, healthReportDue, healthTargets, safeReason } from './health-plan.ts';

export interface ReplicaHealthOptions {
  nodeKey: KeyPair;
  store: Pick<StateStore, 'views' | 'author' | 'onAccepted'>;
  vmm: Pick<VmManager, 'list' | 'exec'>;
  logger: Logger;
  /** How often the set of replicas to check is refreshed (ms); checks run at their own interval. */
  refreshMs?: number;
  /** Tests may pass another transport (the real one opens sockets). */
  transport?: ProbeTransport;
}

/**
 * Checks this node's replicas and reports their health in state.
 *
 * @example
 * const monitor = new ReplicaHealthMonitor({ nodeKey, store, vmm: vmm.manager, logger });
 * monitor.start();
 */
export class ReplicaHealthMonitor {
  private readonly o: ReplicaHealthOptions;
  private readonly log: Logger;
  private readonly prober: Prober;
  private targets = new Map<string, HealthTarget>();
  private timer: NodeJS.Timeout | undefined;

  constructor(o: ReplicaHealthOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'replica-health' });
    const runCommand: CommandRunner = async (key, command, timeoutMs) => {
      const t = this.targets.get(key);
      if (!t) return { ok: false, detail: 'replica gone' };
      const [path, args] =
        command.form === 'exec'
          ? [command.argv[0] ?? '/bin/true', command.argv.slice(1)]
          : ['/bin/sh', ['-c', command.command]];
      const r = await o.vmm.exec(t.vmId, path, args, timeoutMs);
      if (r.exitcode === 0) return { ok: true };
      const tail = (r.stderr || r.stdout).trim().split('\n').slice(-1)[0] ?? '';
      return { ok: false, detail: `exit ${r.exitcode}${tail ? `: ${tail}` : ''}` };
    };
    this.prober = createProber({
      logger: o.logger,
      runCommand,
      ...(o.transport ? { transport: o.transport } : {}),
      onChange: () => this.report(),
    });
  }

  start(): void {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), this.o.refreshMs ?? 2000);
    this.timer.unref();
  }

  /** Re-read state and VMs: start checks on new replicas, stop gone ones, report what changed. */
  refresh(): void {
    try {
      const views = this.o.store.views();
      const list = healthTargets(views.instances, this.o.nodeKey.publicKey, this.o.vmm.list(), vmNameFor);
      this.targets = new Map(list.map((t) => [t.key, t]));
      this.prober.set(
        list.map((t) => ({ replicaId: t.key, address: t.address ?? '', startedAt: t.startedAt, spec: t.spec })),
      );
      this.report();
    } catch (err) {
      this.log.warn({ err }, 'replica health not refreshed');
    }
  }

  private report(): void {
    const views = this.o.store.views();
    for (const t of this.targets.values()) {
      const r = this.prober.report(t.key);
      if (!r) continue;
      const inst = views.instances.find((i) => i.id === t.instanceId);
      const mine = inst?.replicaSet.find((x) => x.node === this.o.nodeKey.publicKey);
      if (!mine) continue;
      const failedLast = [...r.last].reverse().find((x) => !x.ok);
      const reason = r.status === 'healthy' ? null : failedLast?.detail ? safeReason(failedLast.detail) : null;
      if (!healthReportDue(mine.health, { status: r.status, reason }, t.release)) continue;
      try {
        this.o.store.author(this.o.nodeKey, 'instance.health', {
          instanceId: t.instanceId,
          node: this.o.nodeKey.publicKey,
          status: r.status,
          release: t.release,
          ...(reason ? { reason } : {}),
        });
        this.log.info({ instance: t.instanceId, release: t.release, status: r.status, reason }, 'replica health');
      } catch (err) {
        this.log.warn({ err, instance: t.instanceId }, 'replica health not recorded');
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.prober.close();
  }
}
