// What a VM action (vm-power, vm-suspend, vm-snapshot, vm-revision, vm-recover) needs of the manager:
// its options (driver, store, network, timeouts) and the few operations on a VM record that keep the
// manager's invariants (state changes with a reason, persistence, capacity, readiness, health).
import type { Logger } from '@formation/service';
import type { VmManagerOptions } from './manager.ts';
import type { VmState } from './state-machine.ts';
import type { VmRecord, VmView } from './types.ts';
import type { WakeGate } from './wake-gate.ts';

/**
 * The manager as its lifecycle actions see it. An action runs inside the VM's lock (the manager's
 * `act`), after the state machine allowed it; it changes the record's state only through `setState`
 * (boots and restores through vm-runtime.ts) and persists it with `save`.
 */
export interface VmContext {
  readonly o: VmManagerOptions;
  readonly log: Logger;
  setState(rec: VmRecord, state: VmState, reason: string): void;
  /** Persist the record (unless the VM was removed meanwhile). */
  save(rec: VmRecord): void;
  view(rec: VmRecord): VmView;
  /**
   * VM_NO_CAPACITY unless the VM's resources fit next to the running VMs and a template VM being
   * booted (which gives its room back to an instance's VM that needs it).
   */
  checkFits(rec: VmRecord): Promise<void>;
  /** Launch the VM's process (boot snapshots included) and settle its state: running, or back on failure. */
  boot(rec: VmRecord, why: string): Promise<void>;
  /** Wake whoever waits for this VM to be ready (it became ready, or never will). */
  wakeWaiters(id: string): void;
  /** Forget the VM's last health probe (no process to probe). */
  dropHealth(id: string): void;
  /** The wake gate (tap mode with wake on connection), once `init` set it up. */
  gate(): WakeGate | undefined;
  /** A connection came for a suspended VM. */
  wakeOnConnect(id: string): Promise<void>;
}

/** Stop timeout the manager was given (default 10 s). */
export function stopTimeoutOf(ctx: VmContext): number {
  return ctx.o.stopTimeoutMs ?? 10_000;
}
