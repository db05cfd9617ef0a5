/**
 * GPUs a node found on its host (`@formation/vmm` `fingerprintGpus`) and reports in its node record,
 * and what an instance asks for (the Formfile's `GPU`). Placement (`@formation/scheduler`) puts a GPU
 * instance only on nodes reporting enough passthrough-capable GPUs of the requested vendor.
 */

/** GPU vendors by PCI vendor id (lowercase hex, no `0x`). */
export const GPU_VENDORS: Readonly<Record<string, string>> = { '10de': 'nvidia', '1002': 'amd', '8086': 'intel' };

/** One GPU (PCI display controller, class 0x03xx) as a node reports it. */
export interface GpuDevice {
  /** PCI address `0000:01:00.0` (what QEMU's `vfio-pci,host=` takes). */
  address: string;
  /** PCI vendor and device ids, 4 lowercase hex digits each. */
  vendor: string;
  device: string;
  /** The IOMMU group, or null when the IOMMU is off. */
  iommuGroup: number | null;
  /** The kernel driver bound to it (`vfio-pci`, `nvidia`, `amdgpu`, …), or null. */
  driver: string | null;
  /** Whether a VM can be given this GPU now (VFIO passthrough possible); `reason` says why not. */
  passthrough: boolean;
  reason?: string | undefined;
}

/** What an instance asks for: `count` GPUs, of `vendor` (`nvidia`, `amd`, `intel`, or a PCI vendor id) or any. */
export interface GpuRequest {
  count: number;
  vendor?: string | undefined;
}

/** Whether a GPU is of the requested vendor (by name or PCI id; any when none is requested). */
export function gpuMatchesVendor(gpu: Pick<GpuDevice, 'vendor'>, vendor: string | undefined): boolean {
  if (vendor === undefined) return true;
  const v = vendor.toLowerCase();
  return gpu.vendor === v || GPU_VENDORS[gpu.vendor] === v;
}

/**
 * How many of `gpus` a VM could be given for `req`: passthrough-capable and of the requested vendor.
 *
 * @example usableGpuCount(node.gpus, { count: 1, vendor: 'nvidia' }) // 2
 */
export function usableGpuCount(gpus: readonly Pick<GpuDevice, 'vendor' | 'passthrough'>[], req: GpuRequest): number {
  return gpus.filter((g) => g.passthrough && gpuMatchesVendor(g, req.vendor)).length;
}

/** `1 GPU`, `2 nvidia GPUs`: a request in words. */
export function describeGpuRequest(req: GpuRequest): string {
  return `${req.count} ${req.vendor ? `${req.vendor} ` : ''}GPU${req.count === 1 ? '' : 's'}`;
}
