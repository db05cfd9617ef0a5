import { FormError } from '@formation/interface';

/**
 * The closed set of VM states (Firecracker style). Transitional states (`starting`, `stopping`,
 * `snapshotting`, `restoring`, `suspending`) are only visible while an action runs; actions on one VM are serialized,
 * so a second action sees the settled state.
 */
export const VM_STATES = [
  'created',
  'starting',
  'running',
  'paused',
  'stopping',
  'stopped',
  'snapshotting',
  'committing',
  'restoring',
  'suspending',
  'suspended',
  'crashed',
  'destroyed',
] as const;
export type VmState = (typeof VM_STATES)[number];

/** The closed set of actions a client can ask for. */
export const VM_ACTIONS = [
  'start',
  'stop',
  'restart',
  'pause',
  'resume',
  'snapshot',
  'restore',
  'commit',
  'suspend',
  'replace-disk',
  'destroy',
] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

/** Which actions each settled state allows. Transitional states allow none. */
export const TRANSITIONS: Record<VmState, readonly VmAction[]> = {
  created: ['start', 'restore', 'replace-disk', 'destroy'],
  starting: [],
  running: ['stop', 'restart', 'pause', 'snapshot', 'restore', 'commit', 'suspend', 'destroy'],
  paused: ['resume', 'stop', 'restart', 'snapshot', 'restore', 'suspend', 'destroy'],
  stopping: [],
  stopped: ['start', 'restore', 'replace-disk', 'destroy'],
  snapshotting: [],
  committing: [],
  restoring: [],
  suspending: [],
  // Suspended to disk: no process, memory in an image. resume/start bring it back; stop discards the image.
  suspended: ['resume', 'start', 'stop', 'destroy'],
  crashed: ['start', 'restore', 'replace-disk', 'destroy'],
  destroyed: [],
};

/** True when `action` is allowed in `state`. */
export function canDo(state: VmState, action: VmAction): boolean {
  return TRANSITIONS[state].includes(action);
}

/**
 * Throw VM_BAD_STATE (409) when `action` is not allowed in `state`, naming the state and what is allowed.
 *
 * @example
 * assertAction('vm-1', 'stopped', 'pause'); // throws "Cannot pause VM vm-1: it is stopped"
 */
export function assertAction(vmId: string, state: VmState, action: VmAction): void {
  if (canDo(state, action)) return;
  const allowed = TRANSITIONS[state];
  throw new FormError('VM_BAD_STATE', `Cannot ${action} VM ${vmId}: it is ${state}`, {
    hint: allowed.length
      ? `In state ${state} a VM allows: ${allowed.join(', ')}.`
      : `Wait until the current action on VM ${vmId} finishes.`,
    details: { state, action, allowed: [...allowed] },
  });
}

/** True for states in which a hypervisor process exists. */
export function hasProcess(state: VmState): boolean {
  return (
    state === 'running' ||
    state === 'paused' ||
    state === 'starting' ||
    state === 'stopping' ||
    state === 'snapshotting' ||
    state === 'committing' ||
    state === 'restoring' ||
    state === 'suspending'
  );
}

/**
 * Runs async tasks one at a time per key (a per-VM mutex): two concurrent actions on one VM never
 * interleave; the second one runs after the first settled and sees its result.
 */
export class KeyedSerializer {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(task, task);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** Number of keys with work queued or running. */
  get busyKeys(): number {
    return this.tails.size;
  }
}
