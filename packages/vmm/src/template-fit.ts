// What a boot template (boot-snapshot.ts) is made from and whether one on disk fits a VM: the wanted
// inputs, template.json, the QEMU fingerprint, the pure mismatch rule and the on-disk lookup (owner,
// mode, sizes and hashes of its state files).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256File } from '@formation/service/files';
import type { DriverVm, DriverVmSpec, HypervisorDriver } from './driver.ts';
import type { QemuIdentity } from './qemu-identity.ts';
import { qemuMismatch, readMeta } from './template-gc.ts';

/** What a VM needs from a template (everything its saved state depends on, besides QEMU). */
export interface TemplateWant {
  formpackId: string;
  kernelSha256: string;
  initramfsSha256: string | null;
  diskSha256: string | null;
  kernel: string;
  initramfs?: string | undefined;
  baseDisk: string;
  baseDiskFormat: DriverVmSpec['baseDiskFormat'];
  diskGiB: number;
  cmdline: string;
  memMiB: number;
  vcpu: number;
  dataDiskMiB: number;
  agentChannel: string;
  /**
   * The network backend: QEMU saves user-mode networking (slirp) with the VM, so a template restores
   * only into the mode it was made in; a tap template boots on its own TAP, attached to nothing.
   */
  netMode: 'user' | 'tap';
  netns?: string | undefined;
}

/** template.json: what a saved template was made from and of. */
export interface TemplateMeta {
  v: 1;
  want: TemplateWant;
  qemu: QemuIdentity;
  /** sha256 and size of each state file. */
  files: Record<string, { sha256: string; bytes: number }>;
  createdAt: string;
  /** Template boot: launch to wait point (ms); saving its state (ms). */
  bootMs: number;
  saveMs: number;
}

/** The directory name of templates made under one QEMU identity. */
export function qemuFingerprint(q: QemuIdentity): string {
  const keys = Object.keys(q).sort() as Array<keyof QemuIdentity>;
  return createHash('sha256')
    .update(JSON.stringify(keys.map((k) => [k, q[k]])))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Why a template does not fit, or undefined when it does. `rebuild`: a new template for what is wanted
 * should replace it (the Formpack or QEMU changed); a VM of another size just cold-boots. Pure.
 */
export function templateMismatch(
  meta: TemplateMeta,
  want: TemplateWant,
  qemu: QemuIdentity,
): { reason: string; rebuild: boolean } | undefined {
  const q = qemuMismatch(meta.qemu, qemu);
  if (q) return { reason: q, rebuild: true };
  const w = meta.want;
  for (const k of ['formpackId', 'kernelSha256', 'initramfsSha256', 'diskSha256', 'baseDisk', 'cmdline'] as const) {
    if (w[k] !== want[k]) return { reason: `the Formpack changed since the template was made (${k})`, rebuild: true };
  }
  for (const k of ['memMiB', 'vcpu', 'dataDiskMiB', 'agentChannel', 'baseDiskFormat', 'netMode', 'netns'] as const) {
    if (w[k] !== want[k]) {
      return { reason: `template has ${k} ${w[k]}, this VM wants ${want[k]}`, rebuild: false };
    }
  }
  return undefined;
}

/** The driver operations templates need (the QEMU driver has them; others simply have no boot snapshots). */
export interface TemplateDriver extends HypervisorDriver {
  templateIdentity(): Promise<QemuIdentity>;
  /** `paused`: load the state but leave the VM paused (a standby VM; `resume` runs it). */
  restore(
    vm: DriverVm,
    dir: string,
    opts?: { memorySha256?: string | undefined; paused?: boolean | undefined },
  ): Promise<void>;
  writeGuestFiles(vm: DriverVm, files: Array<{ path: string; data: string }>, timeoutMs?: number): Promise<void>;
}

export function isTemplateDriver(d: HypervisorDriver): d is TemplateDriver {
  const t = d as Partial<TemplateDriver>;
  return typeof t.templateIdentity === 'function' && typeof t.writeGuestFiles === 'function';
}

export type TemplateFit =
  | { ok: true; dir: string; meta: TemplateMeta }
  | { ok: false; reason: string; rebuild: boolean };

/**
 * The template in `dir` (`<fpDir>/<qemu fingerprint>`) when it fits `want` under `qemu`, else why not
 * (never throws for a bad template): a private directory of the VMM's user, its meta matching, its state
 * files of the recorded sizes and (but for memory.mig, checked while it streams) hashes.
 */
export async function lookupTemplate(
  want: TemplateWant,
  qemu: QemuIdentity,
  dir: string,
  fpDir: string,
): Promise<TemplateFit> {
  if (!existsSync(dir)) {
    // Say why: a template of another QEMU, or none at all.
    for (const other of await readdir(fpDir).catch(() => [] as string[])) {
      const meta = await readMeta(join(fpDir, other)).catch(() => undefined);
      const m = meta && templateMismatch(meta, want, qemu);
      if (m) return { ok: false, reason: m.reason, rebuild: true };
    }
    return { ok: false, reason: 'no template of this Formpack for this QEMU yet', rebuild: true };
  }
  let meta: TemplateMeta;
  try {
    const st = await lstat(dir);
    if (!st.isDirectory() || st.uid !== (process.getuid?.() ?? st.uid) || (st.mode & 0o077) !== 0) {
      return { ok: false, reason: `template ${dir} is not a private directory of the VMM's user`, rebuild: true };
    }
    meta = await readMeta(dir);
  } catch (err) {
    return { ok: false, reason: `template ${dir} is unreadable: ${(err as Error).message}`, rebuild: true };
  }
  const m = templateMismatch(meta, want, qemu);
  if (m) return { ok: false, ...m };
  for (const [name, f] of Object.entries(meta.files)) {
    const p = join(dir, name);
    const st = await stat(p).catch(() => undefined);
    if (!st) return { ok: false, reason: `template file ${name} is missing`, rebuild: true };
    if (st.size !== f.bytes) {
      return { ok: false, reason: `template file ${name} has ${st.size} bytes, ${f.bytes} expected`, rebuild: true };
    }
    // memory.mig is checked while it streams into QEMU (restore with memorySha256); the rest now.
    if (name !== 'memory.mig' && (await sha256File(p)) !== f.sha256) {
      return { ok: false, reason: `template file ${name} is damaged (sha256 differs)`, rebuild: true };
    }
  }
  if (!meta.files['memory.mig'] || !meta.files['disk.qcow2']) {
    return { ok: false, reason: 'template lacks its memory or disk state', rebuild: true };
  }
  return { ok: true, dir, meta };
}
