import { loadVmmConfig, type VmmConfig } from '../src/config.ts';
import type { QemuIdentity } from '../src/qemu-identity.ts';
import { integrationBlocker } from '../src/testing.ts';

export { fixture, inNetns, integrationBlocker, pidsMentioning, qemuVmmConfig } from '../src/testing.ts';

/** node:test options: skip with the reason, or fail when FORM_REQUIRE_INTEGRATION=1. */
export function integrationOpts(needRoot = true): { skip?: string } {
  const why = integrationBlocker(needRoot);
  if (!why) return {};
  if (process.env.FORM_REQUIRE_INTEGRATION === '1') {
    throw new Error(`Integration prerequisite missing and FORM_REQUIRE_INTEGRATION=1: ${why}`);
  }
  return { skip: why };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The capacity the memory-driver API tests give their VMM: 4 vCPU, 1 GiB. */
export const SMALL_CAPACITY = { vcpu: 4, memMiB: 1024, vcpuOvercommit: 4, reserveMemMiB: 0 };

/**
 * The VMM config of a memory-driver test: every directory under `tmp` (vms, images, formpacks, cache),
 * no health checks, no data disk, nothing from the environment; `flags` add to it or override it.
 */
export function memoryVmmConfig(tmp: string, flags: Partial<VmmConfig> = {}): VmmConfig {
  return loadVmmConfig(
    {},
    {
      vmDir: `${tmp}/vms`,
      imagesDir: `${tmp}/images`,
      formpacksDir: `${tmp}/formpacks`,
      cacheDir: `${tmp}/cache`,
      healthIntervalMs: 0,
      dataDiskMiB: 0,
      ...flags,
    },
  );
}

/** A QEMU identity for template tests (what a template was made by). */
export const TEST_QEMU: QemuIdentity = {
  version: 'QEMU emulator version 7.2.22',
  binarySha256: 'a'.repeat(64),
  machine: 'pc',
  accel: 'tcg',
  cpu: 'qemu64',
  devicesSha256: 'b'.repeat(64),
};
