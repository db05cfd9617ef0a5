import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, open, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join, normalize, posix, resolve, sep } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import * as tar from 'tar';
import { type ImageRunConfig, sha256File } from './docker-archive.ts';

/** An image in the local store, unpacked and ready to be a container's root filesystem. */
export interface StoredImage {
  /** `sha256:<hex>` of the config JSON (what `docker inspect --format {{.Id}}` prints). */
  id: string;
  repoTags: string[];
  config: ImageRunConfig;
  rootfs: string;
  importedAt: string;
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

const ALLOWED_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/** A layer path made relative and checked: no absolute paths, no `..`. Returns undefined for the root itself. */
function safeRelative(p: string, what: string): string | undefined {
  const n = posix.normalize(p.replace(/^\.\/+/, ''));
  if (n === '.' || n === './' || n === '') return undefined;
  if (posix.isAbsolute(p) || n.startsWith('../') || n === '..' || n.split('/').includes('..'))
    throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot import image: ${what} has an entry outside the root (${p})`);
  return n.replace(/\/$/, '');
}

/**
 * A local image store without a Docker engine: imports `docker save` archives (plain or gzip),
 * checks the image id (sha256 of the config JSON) and every layer's diff id, and unpacks the layers
 * (applying whiteouts, refusing path traversal and device files) into `<dir>/<hex>/rootfs`.
 *
 * @example
 * const store = new ImageStore('/var/lib/formation/runtime/images', logger);
 * const img = await store.import('golua.tar.gz', { expectId: 'sha256:…' });
 */
export class ImageStore {
  readonly dir: string;
  private readonly log: Logger;

  constructor(dir: string, logger: Logger) {
    this.dir = dir;
    this.log = logger.child({ component: 'runtime-images' });
  }

  private imageDir(id: string): string {
    if (!/^sha256:[0-9a-f]{64}$/.test(id))
      throw new FormError(
        'RUNTIME_IMAGE_INVALID',
        `Cannot use image id ${JSON.stringify(id)}: expected sha256:<64 hex>`,
      );
    return join(this.dir, id.slice(7));
  }

  /** Import an archive. `expectId` makes a mismatching archive fail before anything is stored. */
  async import(archive: string, opts: { expectId?: string } = {}): Promise<StoredImage> {
    await mkdir(this.dir, { recursive: true });
    const work = await mkdtemp(join(this.dir, '.import-'));
    try {
      const outer = join(work, 'archive');
      await mkdir(outer);
      try {
        await tar.x({ file: archive, cwd: outer, strict: true, preserveOwner: false });
      } catch (err) {
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: not a readable tar archive (${(err as Error).message})`,
        );
      }
      let manifest: DockerManifestEntry[];
      try {
        manifest = JSON.parse(await readFile(join(outer, 'manifest.json'), 'utf8')) as DockerManifestEntry[];
      } catch {
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: no valid manifest.json (is it a \`docker save\` archive?)`,
        );
      }
      const entry = manifest[0];
      if (!entry || typeof entry.Config !== 'string' || !Array.isArray(entry.Layers) || manifest.length !== 1)
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: manifest.json must describe exactly one image`,
        );
      const configPath = join(outer, safeRelative(entry.Config, 'manifest') ?? '');
      const configBytes = await readFile(configPath).catch(() => {
        throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot import ${archive}: config ${entry.Config} is missing`);
      });
      const id = `sha256:${createHash('sha256').update(configBytes).digest('hex')}`;
      if (opts.expectId && opts.expectId !== id)
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: its image id is ${id}, expected ${opts.expectId}`,
          {
            hint: 'The archive is not the image the module names (Image-ID); rebuild or re-export it.',
          },
        );
      const config = JSON.parse(configBytes.toString('utf8')) as {
        config?: ImageRunConfig;
        rootfs?: { diff_ids?: string[] };
      };
      const diffIds = config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== entry.Layers.length)
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: config lists ${diffIds.length} layers, manifest ${entry.Layers.length}`,
        );
      const layerFiles: string[] = [];
      for (const [i, l] of entry.Layers.entries()) {
        const file = join(outer, safeRelative(l, 'manifest') ?? '');
        const gz = await isGzip(file);
        const digest = await sha256File(file, gz);
        if (digest !== diffIds[i])
          throw new FormError(
            'RUNTIME_IMAGE_INVALID',
            `Cannot import ${archive}: layer ${l} has content ${digest}, config says ${diffIds[i]}`,
            {
              hint: 'The archive was modified after it was saved.',
            },
          );
        layerFiles.push(file);
      }
      const rootfs = join(work, 'rootfs');
      await mkdir(rootfs);
      for (const f of layerFiles) await applyLayer(f, rootfs);
      const img: StoredImage = {
        id,
        repoTags: entry.RepoTags ?? [],
        config: config.config ?? {},
        rootfs: join(this.imageDir(id), 'rootfs'),
        importedAt: new Date().toISOString(),
      };
      const final = this.imageDir(id);
      await rm(final, { recursive: true, force: true });
      await mkdir(final);
      await rename(rootfs, join(final, 'rootfs'));
      await writeFile(join(final, 'config.json'), configBytes);
      await writeFile(join(final, 'image.json'), JSON.stringify(img, null, 2));
      this.log.info({ id, repoTags: img.repoTags }, 'image imported');
      return img;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** The stored image, re-verified: its config must still hash to its id. Throws when absent or altered. */
  async verified(id: string): Promise<StoredImage> {
    const dir = this.imageDir(id);
    let meta: StoredImage;
    let configBytes: Buffer;
    try {
      meta = JSON.parse(await readFile(join(dir, 'image.json'), 'utf8')) as StoredImage;
      configBytes = await readFile(join(dir, 'config.json'));
    } catch {
      throw new FormError('RUNTIME_IMAGE_NOT_FOUND', `Cannot use image ${id}: it is not in the local image store`, {
        hint: 'Import it first: `form runtime image import <docker-save.tar[.gz]>`.',
      });
    }
    const actual = `sha256:${createHash('sha256').update(configBytes).digest('hex')}`;
    if (actual !== id || meta.id !== id)
      throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot use image ${id}: its stored config hashes to ${actual}`, {
        hint: 'The store was tampered with; re-import the image.',
      });
    return meta;
  }

  async list(): Promise<StoredImage[]> {
    const out: StoredImage[] = [];
    for (const n of await readdir(this.dir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.dir, n, 'image.json'), 'utf8')) as StoredImage);
      } catch {
        // half-imported directory: not an image
      }
    }
    return out;
  }
}

/**
 * Apply one layer tar on top of `rootfs`: first its whiteouts (`.wh.<name>` deletes a lower file,
 * `.wh..wh..opq` empties a lower directory), then its files. Entries that would leave the root and
 * device/FIFO nodes are refused before anything is written.
 */
export async function applyLayer(layerFile: string, rootfs: string): Promise<void> {
  const whiteouts: string[] = [];
  const opaque: string[] = [];
  const absoluteLinks: Array<{ rel: string; target: string }> = [];
  const problems: string[] = [];
  await tar.t({
    file: layerFile,
    strict: true,
    onReadEntry: (e) => {
      try {
        const rel = safeRelative(e.path, 'layer');
        if (e.type === 'Link' && e.linkpath) safeRelative(e.linkpath, 'layer hard link');
        if (!ALLOWED_TYPES.has(e.type))
          problems.push(`${e.path} is a ${e.type} (device files and FIFOs are not allowed)`);
        if (rel && e.type === 'SymbolicLink' && e.linkpath?.startsWith('/'))
          absoluteLinks.push({ rel, target: e.linkpath });
        if (rel) {
          const base = posix.basename(rel);
          if (base === '.wh..wh..opq') opaque.push(posix.dirname(rel));
          else if (base.startsWith('.wh.')) whiteouts.push(posix.join(posix.dirname(rel), base.slice(4)));
        }
      } catch (err) {
        problems.push((err as Error).message);
      }
      e.resume();
    },
  });
  if (problems.length > 0)
    throw new FormError(
      'RUNTIME_IMAGE_INVALID',
      `Cannot import image: layer refused: ${problems.slice(0, 5).join('; ')}`,
    );
  const root = resolve(rootfs);
  const inside = (rel: string): string => {
    const p = resolve(root, normalize(rel));
    if (p !== root && !p.startsWith(root + sep))
      throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot import image: ${rel} is outside the root`);
    return p;
  };
  for (const w of whiteouts) await rm(inside(w), { recursive: true, force: true });
  for (const o of opaque) {
    const d = inside(o);
    const st = await lstat(d).catch(() => undefined);
    if (st?.isDirectory()) for (const n of await readdir(d)) await rm(join(d, n), { recursive: true, force: true });
  }
  // not strict: node-tar reports rewriting absolute symlink targets as an error in strict mode; every
  // other warning (e.g. an entry that would be written through a symlink) still refuses the layer
  const warnings: string[] = [];
  await tar.x({
    file: layerFile,
    cwd: root,
    strict: false,
    preserveOwner: true,
    filter: (p) => !posix.basename(p).startsWith('.wh.'),
    onwarn: (code, message) => {
      if (code !== 'TAR_ENTRY_INFO') warnings.push(`${code}: ${String(message)}`);
    },
  });
  if (warnings.length > 0)
    throw new FormError(
      'RUNTIME_IMAGE_INVALID',
      `Cannot import image: layer refused: ${warnings.slice(0, 5).join('; ')}`,
    );
  // put back absolute symlink targets (they resolve inside the container's root, not the host's)
  for (const l of absoluteLinks) {
    const p = inside(l.rel);
    const st = await lstat(p).catch(() => undefined);
    if (!st?.isSymbolicLink()) continue;
    await rm(p);
    await symlink(l.target, p);
  }
}

async function isGzip(file: string): Promise<boolean> {
  const fh = await open(file, 'r').catch(() => {
    throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot import image: layer ${file} is missing from the archive`);
  });
  try {
    const b = Buffer.alloc(2);
    await fh.read(b, 0, 2, 0);
    return b[0] === 0x1f && b[1] === 0x8b;
  } finally {
    await fh.close();
  }
}
