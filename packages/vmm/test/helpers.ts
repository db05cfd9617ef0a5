import { execFileSync, spawnSync } from 'node:child_process';
import { isFormError } from '@formation/interface';
import type { DriverVmSpec } from '../src/driver.ts';
import { readFormpackDir } from '../src/images.ts';
import { macFor } from '../src/network.ts';
import type { QemuIdentity } from '../src/qemu-identity.ts';
import { integrationBlocker } from '../src/testing.ts';

export {
  fixture,
  inNetns,
  integrationBlocker,
  memoryVmmConfig,
  pidsMentioning,
  qemuVmmConfig,
  SMALL_CAPACITY,
} from '../src/testing.ts';

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

/** A QEMU identity for template tests (what a template was made by). */
export const TEST_QEMU: QemuIdentity = {
  version: 'QEMU emulator version 7.2.22',
  binarySha256: 'a'.repeat(64),
  machine: 'pc',
  accel: 'tcg',
  cpu: 'qemu64',
  devicesSha256: 'b'.repeat(64),
};

/** What a test VM boots: the kernel, disk and cmdline (the VM's name and id are added to it). */
export type TestBoot = Pick<
  DriverVmSpec,
  'kernel' | 'initramfs' | 'cmdline' | 'baseDisk' | 'baseDiskFormat' | 'agentChannel'
>;

/**
 * A driver spec for test VM `id` in `${dir}/${id}`: 1 vCPU, 256 MiB, 1 GiB disk, user networking
 * (`forwards`), booting `boot` with `vm_name` and `vm_id` on its cmdline; `over` changes any field.
 */
export function testVmSpec(
  id: string,
  dir: string,
  boot: TestBoot,
  forwards: Array<{ guest: number; host: number }> = [],
  over: Partial<DriverVmSpec> = {},
): DriverVmSpec {
  return {
    id,
    name: id,
    vcpu: 1,
    memMiB: 256,
    dir: `${dir}/${id}`,
    ...boot,
    cmdline: `${boot.cmdline} vm_name=${id} vm_id=${id}`.trim(),
    diskGiB: 1,
    network: { mode: 'user', forwards, mac: macFor(id) },
    ...over,
  };
}

/** How the test Formpack (`fixture()`) boots, read from its directory. */
export function fixtureBoot(fx: { formpacksDir: string; id: string }): TestBoot {
  const fp = readFormpackDir(`${fx.formpacksDir}/${fx.id}`, fx.id);
  return {
    kernel: fp.kernel,
    initramfs: fp.initramfs,
    cmdline: fp.manifest.cmdline,
    baseDisk: fp.disk,
    baseDiskFormat: 'qcow2',
    agentChannel: fp.manifest.guest.agentChannel,
  };
}

/** One end of a veth pair between two test namespaces: its namespace, interface and address (CIDR). */
export interface NsEnd {
  netns: string;
  ifname: string;
  addr: string;
}

/**
 * Fresh namespaces `a.netns` and `b.netns` (any an earlier run left are deleted first), loopback up,
 * joined by a veth pair with the given addresses, up. Routes are the caller's. Needs root.
 */
export function linkedNamespaces(a: NsEnd, b: NsEnd): void {
  const ip = (args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  for (const ns of [a.netns, b.netns]) {
    spawnSync('ip', ['netns', 'del', ns]);
    ip(['netns', 'add', ns]);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  // Made in the root namespace, then moved: creating a pair across namespaces fails with this iproute2.
  ip(['link', 'add', a.ifname, 'type', 'veth', 'peer', 'name', b.ifname]);
  for (const end of [a, b]) {
    ip(['link', 'set', end.ifname, 'netns', end.netns]);
    ip(['-n', end.netns, 'addr', 'add', end.addr, 'dev', end.ifname]);
    ip(['-n', end.netns, 'link', 'set', end.ifname, 'up']);
  }
}

/** For `assert.throws` / `assert.rejects`: a FormError with `code`, its message matching `message` if given. */
export const coded =
  (code: string, message?: RegExp) =>
  (e: unknown): boolean =>
    isFormError(e) && e.code === code && (message?.test(e.message) ?? true);
