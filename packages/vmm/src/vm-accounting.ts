// What this node's VMs hold: resources of those with a process, GPUs of all (a GPU stays given to its
// VM, running or not, until the VM is destroyed). Pure.
import type { Resources } from '@formation/interface';
import { sumResources } from './capacity.ts';
import { hasProcess } from './state-machine.ts';
import type { VmRecord } from './types.ts';

/** Resources used by the VMs that have a hypervisor process. */
export function usedResources(records: Iterable<VmRecord>): Resources {
  return sumResources([...records].filter((r) => hasProcess(r.state)).map((r) => r.resources));
}

/** PCI addresses of the GPUs given to these VMs. */
export function gpusGiven(records: Iterable<VmRecord>): string[] {
  return [...records].flatMap((r) => r.driver.spec.gpus ?? []);
}
