import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasGuestKernel, missingPrograms } from '@formation/interface';
import { loadVmmConfig, type VmmConfig } from './config.ts';

/**
 * Test support shared by the package's tests, other packages' VMM tests (attest, node) and bench/vmm:
 * the test Formpack fixture, the integration prerequisites check and the QEMU test config. Not used
 * by the service itself.
 */
const FIXTURE_SCRIPT = new URL('../test/fixtures/build-fixture.sh', import.meta.url).pathname;

/** Why integration tests cannot run here, or undefined when they can. */
export function integrationBlocker(needRoot = true): string | undefined {
  if (needRoot && process.getuid?.() !== 0) return 'needs root (mmdebstrap, namespaces)';
  const [bin] = missingPrograms(['qemu-system-x86_64', 'qemu-img', 'mmdebstrap', 'busybox']);
  if (bin) return `${bin} is not installed`;
  if (!hasGuestKernel()) return 'no /boot/vmlinuz-*-cloud-amd64 guest kernel (apt-get install linux-image-cloud-amd64)';
  return undefined;
}

/**
 * The test Formpack (built once by fixtures/build-fixture.sh, ~25 s), cached at
 * /var/tmp/formation-vmm-fixture/<hash of the script>/. Returns the formpacks dir, the Formpack id and
 * the SSH key that the image trusts.
 */
export function fixture(): { formpacksDir: string; id: string; sshKey: string; root: string } {
  const hash = createHash('sha256').update(readFileSync(FIXTURE_SCRIPT)).digest('hex').slice(0, 16);
  const root = join('/var/tmp/formation-vmm-fixture', hash);
  const formpacksDir = join(root, 'formpacks');
  const have = existsSync(formpacksDir)
    ? readdirSync(formpacksDir).filter((d) => existsSync(join(formpacksDir, d, 'manifest.json')))
    : [];
  if (have.length === 0) {
    execFileSync('sh', [FIXTURE_SCRIPT, root], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const id = readdirSync(formpacksDir).find((d) => existsSync(join(formpacksDir, d, 'manifest.json')));
  if (!id) throw new Error(`fixture build produced no Formpack in ${formpacksDir}`);
  return { formpacksDir, id, sshKey: join(root, 'id_ed25519'), root };
}

/**
 * The VMM config of a QEMU integration test: VMs and images under `tmp`, Formpacks from `formpacksDir`
 * (the fixture's), the QEMU cache shared by all runs in /var/tmp (so each test does not probe the
 * accelerator again), no health checks, nothing from the environment; `flags` add to it or override it.
 * The memory-driver tests use `memoryVmmConfig` below instead.
 */
export function qemuVmmConfig(tmp: string, formpacksDir: string, flags: Partial<VmmConfig> = {}): VmmConfig {
  return loadVmmConfig(
    {},
    {
      vmDir: `${tmp}/vms`,
      imagesDir: `${tmp}/images`,
      formpacksDir,
      cacheDir: '/var/tmp/formation-vmm-cache',
      healthIntervalMs: 0,
      ...flags,
    },
  );
}

/** The capacity the memory-driver API tests give their VMM: 4 vCPU, 1 GiB. */
export const SMALL_CAPACITY = { vcpu: 4, memMiB: 1024, vcpuOvercommit: 4, reserveMemMiB: 0 };

/**
 * The VMM config of a memory-driver test (this package's, or a dashboard test's): every directory under `tmp` (vms, images, formpacks, cache),
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

/**
 * Runs `cmd` with `sh -c` inside network namespace `netns` (15 s cap): its exit status and its stdout
 * and stderr together, for tests that ping or curl a guest from the namespace its TAP lives in.
 */
export function inNetns(netns: string, cmd: string): { status: number | null; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', netns, 'sh', '-c', cmd], { encoding: 'utf8', timeout: 15_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** PIDs of processes whose command line mentions `needle` (to check nothing leaked). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.includes(needle)) && !(argv[0] ?? '').endsWith('node')) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}
