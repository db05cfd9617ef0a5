// A VM record's runtime fields (state and its reason, the current boot's start and readiness) change
// here, the same way for every path that boots a VM: the manager's boot (launch, template restore) and
// a standby taken for a create (vm-standby-host.ts). Pure on the record; the caller persists it.
import { existsSync, statSync } from 'node:fs';
import type { VmState } from './state-machine.ts';
import type { VmRecord } from './types.ts';

/** Set the VM's state, why, and when (`updatedAt`). */
export function setVmState(rec: VmRecord, state: VmState, reason: string, at = new Date().toISOString()): void {
  rec.state = state;
  rec.stateReason = reason;
  rec.updatedAt = at;
}

/**
 * A boot began: the VM is not ready until this boot's guest says so, so readiness is searched only in
 * the console output written from now on (the serial log keeps earlier boots).
 */
export function bootBegan(rec: VmRecord): void {
  rec.ready = false;
  rec.readyAt = undefined;
  rec.bootMs = undefined;
  const serial = rec.driver.paths.serial;
  rec.serialOffset = existsSync(serial) ? statSync(serial).size : 0;
}

/** The booted VM's process runs, since now (its boot time counts from here). */
export function bootRunning(rec: VmRecord, reason: string): void {
  rec.startedAt = new Date().toISOString();
  setVmState(rec, 'running', reason, rec.startedAt);
}

/** The guest said it is ready (FORM-INIT-READY after `serialOffset`): now, and how long the boot took. */
export function becameReady(rec: VmRecord): void {
  rec.ready = true;
  rec.readyAt = new Date().toISOString();
  if (rec.startedAt) rec.bootMs = Date.parse(rec.readyAt) - Date.parse(rec.startedAt);
}

/**
 * A VM restored from a memory image (a snapshot, a suspend to disk) runs, since now: ready at once when
 * its guest was ready when the image was saved (no new FORM-INIT-READY comes), else not yet.
 */
export function restoredRunning(rec: VmRecord, reason: string, ready: boolean): void {
  bootRunning(rec, reason);
  rec.ready = ready;
  rec.readyAt = ready ? rec.startedAt : undefined;
}
