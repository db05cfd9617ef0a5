// The public view of a VM record (what GET /vms/{id} answers). Pure.
import { hasProcess } from './state-machine.ts';
import type { VmHealth, VmRecord, VmView } from './types.ts';

/** The view of record `r` with its last health round (`health`, shown while it has a process). */
export function vmView(r: VmRecord, health: VmHealth | undefined): VmView {
  const { dns: _dns, ...net } = r.network;
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    state: r.state,
    stateReason: r.stateReason,
    source: r.source,
    resources: r.resources,
    network: net,
    pid: hasProcess(r.state) ? (r.driver.pid ?? null) : null,
    ready: r.ready,
    startedAt: r.startedAt ?? null,
    readyAt: r.readyAt ?? null,
    bootMs: r.bootMs ?? null,
    boot: r.boot
      ? {
          kind: r.boot.kind,
          launchedAt: r.boot.launchedAt,
          readyMs: r.ready && r.readyAt ? Date.parse(r.readyAt) - Date.parse(r.boot.launchedAt) : null,
          fallback: r.boot.fallback ?? null,
          ...(r.boot.standby ? { standby: true } : {}),
        }
      : null,
    measurement: r.measurement ?? null,
    health: hasProcess(r.state) ? (health ?? null) : null,
    lastExit: r.lastExit ?? null,
    restartPolicy: r.restartPolicy,
    restarts: r.restarts,
    snapshots: r.snapshots.map(({ dir: _d, ...s }) => s),
    revisions: (r.revisions ?? []).map(({ file: _f, ...x }) => x),
    suspended: r.suspended ? { bytes: r.suspended.bytes, at: r.suspended.at, saveMs: r.suspended.saveMs } : null,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}
