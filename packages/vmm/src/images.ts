import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { FormError, type FormpackManifest } from '@formation/interface';
import { x as untar } from 'tar';

const execFileP = promisify(execFile);

export type ImageFormat = 'raw' | 'qcow2' | 'vmdk' | 'formpack';

/** One entry of GET /images. */
export interface ImageInfo {
  name: string;
  format: ImageFormat;
  file: string;
  bytes: number;
  modifiedAt: string;
}

const EXT: Record<string, ImageFormat> = { '.img': 'raw', '.qcow2': 'qcow2', '.vmdk': 'vmdk', '.form': 'formpack' };

function formatOf(name: string): ImageFormat | undefined {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? EXT[name.slice(dot)] : undefined;
}

/** Images in `dir`: raw `.img`, `.qcow2`, `.vmdk` and Formpacks `.form` (archive or directory). */
export function listImages(dir: string): ImageInfo[] {
  if (!existsSync(dir)) return [];
  const out: ImageInfo[] = [];
  for (const name of readdirSync(dir).sort()) {
    const format = formatOf(name);
    if (!format) continue;
    const file = join(dir, name);
    const st = statSync(file);
    if (st.isDirectory() && format !== 'formpack') continue;
    out.push({ name, format, file, bytes: st.isDirectory() ? 0 : st.size, modifiedAt: st.mtime.toISOString() });
  }
  return out;
}

/** Find one image by file name (with or without extension). VM_IMAGE_INVALID / NOT_FOUND otherwise. */
export function findImage(dir: string, name: string): ImageInfo {
  if (name.includes('/') || name.startsWith('.')) {
    throw new FormError('BAD_REQUEST', `Cannot use image ${name}: an image name has no slashes`);
  }
  const all = listImages(dir);
  const hit = all.find((i) => i.name === name) ?? all.find((i) => i.name.slice(0, i.name.lastIndexOf('.')) === name);
  if (!hit) {
    throw new FormError('NOT_FOUND', `Cannot find image ${name} in ${dir}`, {
      hint: `Available: ${all.map((i) => i.name).join(', ') || 'none'}. GET /images lists them.`,
    });
  }
  return hit;
}

/** A Formpack ready to boot: its manifest and absolute artifact paths. */
export interface ResolvedFormpack {
  manifest: FormpackManifest;
  dir: string;
  disk: string;
  kernel: string;
  initramfs: string;
}

/** Read and check `<dir>/manifest.json` and its artifacts. */
export function readFormpackDir(dir: string, label: string): ResolvedFormpack {
  let manifest: FormpackManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as FormpackManifest;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new FormError(
      'VM_IMAGE_INVALID',
      `Cannot use Formpack ${label}: ${e.code === 'ENOENT' ? 'manifest.json is missing' : `manifest.json is unreadable (${e.message})`}`,
    );
  }
  const a = manifest.artifacts;
  if (
    !a?.disk?.file ||
    !a.kernel?.file ||
    !a.initramfs?.file ||
    !manifest.resources ||
    typeof manifest.cmdline !== 'string'
  ) {
    throw new FormError(
      'VM_IMAGE_INVALID',
      `Cannot use Formpack ${label}: manifest.json lacks artifacts, resources or cmdline`,
    );
  }
  const r: ResolvedFormpack = {
    manifest,
    dir,
    disk: join(dir, basename(a.disk.file)),
    kernel: join(dir, basename(a.kernel.file)),
    initramfs: join(dir, basename(a.initramfs.file)),
  };
  for (const [what, p] of [
    ['disk', r.disk],
    ['kernel', r.kernel],
    ['initramfs', r.initramfs],
  ] as const) {
    if (!existsSync(p))
      throw new FormError('VM_IMAGE_INVALID', `Cannot use Formpack ${label}: its ${what} ${p} is missing`);
  }
  return r;
}

/** Resolve a Formpack by id in `<formpacksDir>/<id>/`. */
export function resolveFormpack(formpacksDir: string, id: string): ResolvedFormpack {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(id) || id.startsWith('.')) {
    throw new FormError('BAD_REQUEST', `Cannot use Formpack ${JSON.stringify(id)}: not a valid Formpack id`);
  }
  const dir = join(formpacksDir, id);
  if (!existsSync(dir)) {
    throw new FormError('PACK_NOT_FOUND', `Cannot find Formpack ${id} in ${formpacksDir}`, {
      hint: 'Build it with `form pack build`, or check the id.',
    });
  }
  return readFormpackDir(dir, id);
}

/** A `.form` image: a Formpack directory, or an archive of one (extracted once into `cacheDir`). */
export async function openFormImage(img: ImageInfo, cacheDir: string): Promise<ResolvedFormpack> {
  if (statSync(img.file).isDirectory()) return readFormpackDir(img.file, img.name);
  const key = `${img.name}-${statSync(img.file).mtimeMs.toFixed(0)}`;
  const out = join(cacheDir, key);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    try {
      await untar({ file: img.file, cwd: tmp, strict: true });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw new FormError('VM_IMAGE_INVALID', `Cannot unpack image ${img.name}: ${(err as Error).message}`);
    }
    renameSync(tmp, out);
  }
  // manifest.json at the top, or one directory down (<id>/manifest.json)
  if (existsSync(join(out, 'manifest.json'))) return readFormpackDir(out, img.name);
  const sub = readdirSync(out).find((d) => existsSync(join(out, d, 'manifest.json')));
  if (!sub) throw new FormError('VM_IMAGE_INVALID', `Cannot use image ${img.name}: the archive holds no manifest.json`);
  return readFormpackDir(join(out, sub), img.name);
}

/** The newest host kernel to boot plain images with (`/boot/vmlinuz-*`, cloud flavour preferred). */
export function hostKernel(): string | undefined {
  if (!existsSync('/boot')) return undefined;
  const all = readdirSync('/boot')
    .filter((f) => f.startsWith('vmlinuz-'))
    .sort();
  const pick = all.filter((f) => f.includes('cloud')).pop() ?? all.pop();
  return pick ? join('/boot', pick) : undefined;
}

/** Build (once, cached by kernel version) the initramfs used to boot plain images with a host kernel. */
export async function hostInitramfs(kernel: string, cacheDir: string): Promise<string> {
  const kver = basename(kernel).replace(/^vmlinuz-/, '');
  const out = join(cacheDir, `initramfs-${kver}.img`);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const script = new URL('./assets/mk-initramfs.sh', import.meta.url).pathname;
  try {
    await execFileP('sh', [script, out, kver]);
  } catch (err) {
    throw new FormError('HOST_UNSUPPORTED', `Cannot build an initramfs for kernel ${kver}: ${(err as Error).message}`, {
      hint: 'Set VMM_KERNEL_PATH and initramfsPath, or boot Formpacks (they carry their own).',
    });
  }
  return out;
}
