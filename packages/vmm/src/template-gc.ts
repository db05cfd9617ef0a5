// Garbage collection of boot templates (boot-snapshot.ts): which templates go is pure (planTemplateGc,
// table-tested); reading the templates root is scanTemplates; BootTemplates.gc deletes.
import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { QemuIdentity } from './qemu-identity.ts';
import type { TemplateMeta } from './template-fit.ts';

/** One template directory as found on disk. */
export interface TemplateEntry {
  /** `<root>/<formpack id>/<qemu fingerprint>` (or a leftover `….build`). */
  dir: string;
  formpackId: string;
  /** Disk space its files take (allocated blocks, not apparent size). */
  bytes: number;
  /** Last restore from it, else when it was saved (template.json's mtime, ms). */
  lastUsedMs: number;
  /** undefined: no readable template.json (a build that never finished, a damaged template). */
  meta: TemplateMeta | undefined;
}

export interface TemplateGcInput {
  entries: TemplateEntry[];
  /** Whether a Formpack is still on this node (its directory in the VMM's formpacksDir). */
  formpackPresent: (formpackId: string) => boolean;
  /** The QEMU this node runs now (QemuDriver.templateIdentity()). */
  qemu: QemuIdentity;
  /** Disk budget of all templates together (bytes). */
  budgetBytes: number;
  /** Directories being restored from or built: never deleted (they still count against the budget). */
  inUse: ReadonlySet<string>;
  nowMs: number;
}

export interface TemplateDeletion {
  dir: string;
  formpackId: string;
  bytes: number;
  reason: string;
}

/**
 * Why a template made under `made` cannot be restored by the QEMU `now` runs, or undefined (the QEMU
 * half of templateMismatch: binary, version, machine, accelerator, CPU model, device layout). Pure.
 */
export function qemuMismatch(made: QemuIdentity, now: QemuIdentity): string | undefined {
  if (made.binarySha256 !== now.binarySha256 || made.version !== now.version) {
    return `template made by another QEMU (${made.version}, binary ${made.binarySha256.slice(0, 12)}; this node runs ${now.version}, binary ${now.binarySha256.slice(0, 12)})`;
  }
  for (const k of ['machine', 'accel', 'cpu', 'devicesSha256'] as const) {
    if (made[k] !== now[k]) return `template made with ${k} ${made[k]}, this node uses ${now[k]}`;
  }
  return undefined;
}

/**
 * Which templates to delete, and why. A template in use is never deleted. The others go when their
 * Formpack is no longer on the node, when they are unreadable or unfinished, or when no VM of this
 * node's QEMU can restore them; then, while the rest is over the budget, the least recently used go
 * first. Pure.
 *
 * @example
 * planTemplateGc({ entries, formpackPresent: (id) => ids.has(id), qemu, budgetBytes: 2 * 2 ** 30, inUse: new Set(), nowMs: Date.now() })
 */
export function planTemplateGc(i: TemplateGcInput): TemplateDeletion[] {
  const out: TemplateDeletion[] = [];
  const kept: TemplateEntry[] = [];
  const drop = (e: TemplateEntry, reason: string) =>
    out.push({ dir: e.dir, formpackId: e.formpackId, bytes: e.bytes, reason });
  for (const e of i.entries) {
    if (i.inUse.has(e.dir)) {
      kept.push(e);
      continue;
    }
    if (!i.formpackPresent(e.formpackId)) drop(e, 'its Formpack is no longer on this node');
    else if (!e.meta) drop(e, 'no readable template.json (an unfinished build or a damaged template)');
    else {
      const why =
        e.meta.want?.formpackId !== e.formpackId ? 'made for another Formpack' : qemuMismatch(e.meta.qemu, i.qemu);
      if (why) drop(e, `it does not fit any more: ${why}`);
      else kept.push(e);
    }
  }
  let total = kept.reduce((n, e) => n + e.bytes, 0);
  // Least recently used first; ties by directory, so the plan does not depend on readdir's order.
  const lru = kept
    .filter((e) => !i.inUse.has(e.dir))
    .sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.dir < b.dir ? -1 : 1));
  for (const e of lru) {
    if (total <= i.budgetBytes) break;
    const idleMin = Math.max(0, Math.round((i.nowMs - e.lastUsedMs) / 60_000));
    drop(
      e,
      `templates take ${mib(total)} MiB, over the budget of ${mib(i.budgetBytes)} MiB: least recently used (${idleMin} min ago)`,
    );
    total -= e.bytes;
  }
  return out;
}

const mib = (b: number): number => Math.round(b / 2 ** 20);

/** Read and check a template.json (VM_IMAGE_INVALID when it is not a version 1 description). */
export async function readMeta(dir: string): Promise<TemplateMeta> {
  const meta = JSON.parse(await readFile(join(dir, 'template.json'), 'utf8')) as TemplateMeta;
  if (
    meta?.v !== 1 ||
    typeof meta.qemu !== 'object' ||
    typeof meta.want !== 'object' ||
    typeof meta.files !== 'object'
  ) {
    throw new FormError('VM_IMAGE_INVALID', `template.json in ${dir} is not a version 1 template description`);
  }
  return meta;
}

/** Every template directory under `root` (`<formpack id>/<key>/`), with its size and last use. */
export async function scanTemplates(root: string): Promise<TemplateEntry[]> {
  const out: TemplateEntry[] = [];
  for (const formpackId of await readdir(root).catch(() => [] as string[])) {
    const fpDir = join(root, formpackId);
    if (!(await lstat(fpDir).catch(() => undefined))?.isDirectory()) continue;
    for (const key of await readdir(fpDir).catch(() => [] as string[])) {
      const dir = join(fpDir, key);
      const st = await lstat(dir).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      let bytes = 0;
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        const fst = await lstat(join(dir, f)).catch(() => undefined);
        if (fst?.isFile()) bytes += fst.blocks * 512;
      }
      const meta = key.endsWith('.build') ? undefined : await readMeta(dir).catch(() => undefined);
      const used = meta ? await lstat(join(dir, 'template.json')).catch(() => undefined) : undefined;
      out.push({ dir, formpackId, bytes, lastUsedMs: (used ?? st).mtimeMs, meta });
    }
  }
  return out;
}
