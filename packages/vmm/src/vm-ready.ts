// Waiting for a VM's guest to be ready (its init printed FORM-INIT-READY on the console).
import { FormError } from '@formation/interface';
import { tail } from './serial-console.ts';
import { hasProcess } from './state-machine.ts';
import type { VmRecord, VmView } from './types.ts';

/** Callers waiting for VMs to be ready; `wake(id)` makes those of one VM look at it again. */
export class ReadyWaiters {
  private readonly waiters = new Map<string, Array<() => void>>();

  /** Wake every waiter of VM `id`: each resolves (ready), rejects (no process, gone) or keeps waiting. */
  wake(id: string): void {
    for (const w of [...(this.waiters.get(id) ?? [])]) w();
  }

  /** Resolve with the view once VM `id` (looked up with `find`) is ready; reject after `timeoutMs` or when it stops. */
  wait(
    id: string,
    timeoutMs: number,
    find: (id: string) => VmRecord | undefined,
    view: (r: VmRecord) => VmView,
  ): Promise<VmView> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        const r = find(id);
        reject(
          new FormError('TIMEOUT', `VM ${id} was not ready within ${timeoutMs} ms (state ${r?.state ?? 'destroyed'})`, {
            details: { console: r ? tail(r.driver.paths.serial, 1500) : '' },
          }),
        );
      }, timeoutMs);
      // A wait alone never keeps the process up (a template build still waiting on a destroyed VM held a
      // test process 180 s after its last test).
      timer.unref();
      const waiter = (): void => {
        const r = find(id);
        if (!r || r.ready || !hasProcess(r.state)) {
          done();
          if (r?.ready) resolve(view(r));
          else
            reject(
              new FormError('VM_BAD_STATE', `VM ${id} stopped before it was ready: ${r?.stateReason ?? 'destroyed'}`),
            );
        }
      };
      const list = this.waiters.get(id) ?? [];
      list.push(waiter);
      this.waiters.set(id, list);
      const done = (): void => {
        clearTimeout(timer);
        const l = this.waiters.get(id);
        if (l)
          this.waiters.set(
            id,
            l.filter((w) => w !== waiter),
          );
      };
    });
  }
}
