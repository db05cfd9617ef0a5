import type { GpuDevice } from '@formation/interface';

/**
 * What this node says about its GPUs in state: the `node.update` body when what the host has now
 * (`@formation/vmm` `fingerprintGpus`) differs from what its node record says, else null (nothing to
 * author). Compared as canonical JSON by PCI address, so the same GPUs found in another order change
 * nothing. The record is the node's own claim: placement trusts it, and a boot that cannot pass the GPU
 * fails and moves the replica (see the scheduler README).
 *
 * @example gpuRecordUpdate(myNodeView?.gpus, fingerprintGpus()) // { gpus: [...] } or null
 */
export function gpuRecordUpdate(
  recorded: readonly GpuDevice[] | undefined,
  found: readonly GpuDevice[],
): { gpus: GpuDevice[] } | null {
  const norm = (l: readonly GpuDevice[]) =>
    JSON.stringify(
      [...l]
        .sort((a, b) => (a.address < b.address ? -1 : 1))
        .map((g) => [g.address, g.vendor, g.device, g.iommuGroup, g.driver, g.passthrough, g.reason ?? null]),
    );
  if (norm(recorded ?? []) === norm(found)) return null;
  return { gpus: found.map((g) => ({ ...g, ...(g.reason ? { reason: g.reason.slice(0, 256) } : {}) })) };
}
