import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestFiles } from '@formation/guest';
import type { FormpackManifest } from '@formation/interface';

/**
 * Test and bench support (not used by the service): integration prerequisites, and a small Formpack
 * built with the real builder (so it carries /usr/sbin/form-attest), cached under /var/tmp keyed by
 * the guest files, plus a tampered copy of it (one extra byte at the end of its disk).
 */
export function integrationBlocker(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (QEMU networking, mmdebstrap)';
  for (const bin of ['qemu-system-x86_64', 'qemu-img', 'mmdebstrap', 'openssl']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) return `${bin} is not installed`;
  }
  if (!readdirSync('/boot').some((f) => f.startsWith('vmlinuz-') && f.includes('cloud'))) {
    return 'no /boot/vmlinuz-*-cloud-amd64 guest kernel';
  }
  return undefined;
}

export interface AttestFixture {
  formpacksDir: string;
  id: string;
  tamperedId: string;
  manifest: FormpackManifest;
}

export async function attestFixture(): Promise<AttestFixture> {
  const h = createHash('sha256');
  for (const g of guestFiles()) h.update(readFileSync(g.source));
  const root = join('/var/tmp/formation-attest-fixture', h.digest('hex').slice(0, 16));
  const ctx = join(root, 'context');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(join(ctx, 'Formfile'), 'NAME attest-e2e\n\nVCPU 1\n\nMEM 512\n\nDISK 5\n');
  const { Builder, loadSpec } = await import('@formation/pack');
  const builder = new Builder({
    dataDir: join(root, 'data'),
    cacheDir: process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache',
  });
  const { spec, dir } = await loadSpec(ctx);
  const { id, manifest } = await builder.build({ spec, dir, owner: 'attest-test' });
  const formpacksDir = join(root, 'data', 'formpacks');
  const tamperedId = `${id.slice(0, 48)}-tampered`;
  const tdir = join(formpacksDir, tamperedId);
  if (!existsSync(join(tdir, 'manifest.json'))) {
    cpSync(join(formpacksDir, id), `${tdir}.tmp`, { recursive: true });
    // An operator (or an attacker on the node) changes the disk but keeps the manifest.
    writeFileSync(join(`${tdir}.tmp`, manifest.artifacts.disk.file), Buffer.from([0]), { flag: 'a' });
    cpSync(`${tdir}.tmp`, tdir, { recursive: true });
    spawnSync('rm', ['-rf', `${tdir}.tmp`]);
  }
  return { formpacksDir, id, tamperedId, manifest };
}
