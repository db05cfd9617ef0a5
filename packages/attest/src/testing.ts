import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestFiles } from '@formation/guest';
import type { FormpackManifest } from '@formation/interface';

/**
 * Test and bench support (not used by the service): integration prerequisites, Formpacks built with
 * the real builder (so they carry /usr/sbin/form-attest) and cached under /var/tmp keyed by their
 * context and the guest files, and a tampered copy of one (one extra byte at the end of its disk).
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

/** A Formpack built for tests: the store it is in, its ID and its manifest. */
export interface BuiltFormpack {
  formpacksDir: string;
  id: string;
  manifest: FormpackManifest;
}

export interface AttestFixture extends BuiltFormpack {
  tamperedId: string;
}

/** A build-context file: its text, or its text and mode (for a script the entrypoint runs). */
export type ContextFile = string | { text: string; mode: number };

/**
 * Build the context `files` (a Formfile among them) with the real builder, once: the result is kept
 * under `cacheRoot`, keyed by the files' text and the guest files every image takes in, so a change
 * to either builds anew.
 */
export async function cachedFormpack(
  cacheRoot: string,
  files: Record<string, ContextFile>,
  owner: string,
): Promise<BuiltFormpack> {
  const h = createHash('sha256');
  for (const f of Object.values(files)) h.update(typeof f === 'string' ? f : f.text);
  for (const g of guestFiles()) h.update(readFileSync(g.source));
  const root = join(cacheRoot, h.digest('hex').slice(0, 16));
  const ctx = join(root, 'context');
  mkdirSync(ctx, { recursive: true });
  for (const [name, f] of Object.entries(files)) {
    writeFileSync(join(ctx, name), typeof f === 'string' ? f : f.text);
    if (typeof f !== 'string') chmodSync(join(ctx, name), f.mode);
  }
  const { Builder, loadSpec } = await import('@formation/pack');
  const builder = new Builder({
    dataDir: join(root, 'data'),
    cacheDir: process.env.FORM_PACK_CACHE ?? '/var/tmp/formation-pack-cache',
  });
  const { spec, dir } = await loadSpec(ctx);
  const { id, manifest } = await builder.build({ spec, dir, owner });
  return { formpacksDir: join(root, 'data', 'formpacks'), id, manifest };
}

export async function attestFixture(): Promise<AttestFixture> {
  const { formpacksDir, id, manifest } = await cachedFormpack(
    '/var/tmp/formation-attest-fixture',
    { Formfile: 'NAME attest-e2e\n\nVCPU 1\n\nMEM 512\n\nDISK 5\n' },
    'attest-test',
  );
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
