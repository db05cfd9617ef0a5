import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { ownedDir } from './dirs.ts';
import { type ImageRunConfig, sha256File } from './docker-archive.ts';
import { readTarFile, type TarEntry } from './tar-reader.ts';

/** An image in the local store, unpacked and ready to be a container's root filesystem. */
export interface StoredImage {
  /** `sha256:<hex>` of the config JSON (what `docker inspect --format {{.Id}}` prints). */
  id: string;
  repoTags: string[];
  config: ImageRunConfig;
  rootfs: string;
  importedAt: string;
  /** Host uid/gid = image uid/gid + idShift (the user namespace range the image was unpacked for). */
  idShift?: number;
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

const ALLOWED_TYPES = new Set<TarEntry['type']>(['file', 'dir', 'symlink', 'hardlink']);
const TYPE_NAMES: Record<TarEntry['type'], string> = {
  file: 'file',
  dir: 'directory',
  symlink: 'symbolic link',
  hardlink: 'hard link',
  char: 'character device',
  block: 'block device',
  fifo: 'FIFO',
};

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** The image config JSON, checked to have the shape we use (a bad one would fail later, at run time). */
function parseImageConfig(
  bytes: Buffer,
  archive: string,
): { config?: ImageRunConfig; rootfs?: { diff_ids?: string[] } } {
  const invalid = (why: string) =>
    new FormError('RUNTIME_IMAGE_INVALID', `Cannot import ${archive}: its image config ${why}`, {
      hint: 'The archive was not written by `docker save` or was modified; export it again.',
    });
  let c: unknown;
  try {
    c = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid('is not valid JSON');
  }
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw invalid('is not a JSON object');
  const { config, rootfs } = c as { config?: unknown; rootfs?: unknown };
  if (config != null) {
    if (typeof config !== 'object' || Array.isArray(config)) throw invalid('has a `config` that is not an object');
    const r = config as Record<string, unknown>;
    for (const k of ['Entrypoint', 'Cmd', 'Env'])
      if (r[k] != null && !isStringArray(r[k])) throw invalid(`has a \`config.${k}\` that is not a list of strings`);
    if (r.WorkingDir != null && typeof r.WorkingDir !== 'string')
      throw invalid('has a `config.WorkingDir` that is not a string');
  }
  if (rootfs != null) {
    const d = (rootfs as { diff_ids?: unknown }).diff_ids;
    if (typeof rootfs !== 'object' || (d != null && !isStringArray(d)))
      throw invalid('has `rootfs.diff_ids` that is not a list of strings');
  }
  return c as { config?: ImageRunConfig; rootfs?: { diff_ids?: string[] } };
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
  /** Added to every uid/gid in the layers: the host uid range a user namespace maps container ids to. */
  readonly idShift: number;
  private readonly log: Logger;

  constructor(dir: string, logger: Logger, opts: { idShift?: number } = {}) {
    this.dir = dir;
    this.idShift = opts.idShift ?? 0;
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
    // 0711: containers with a user namespace must reach <dir>/<hex>/rootfs; nobody may list or write
    await ownedDir(this.dir, 0o711);
    const work = await mkdtemp(join(this.dir, '.import-'));
    try {
      const outer = join(work, 'archive');
      await mkdir(outer);
      await extractArchive(archive, outer, archive);
      let manifest: DockerManifestEntry[];
      try {
        manifest = JSON.parse(await readFile(await archiveFile(outer, 'manifest.json', archive), 'utf8'));
      } catch {
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: no valid manifest.json (is it a \`docker save\` archive?)`,
        );
      }
      const entry = Array.isArray(manifest) ? manifest[0] : undefined;
      if (
        !entry ||
        typeof entry !== 'object' ||
        typeof entry.Config !== 'string' ||
        !Array.isArray(entry.Layers) ||
        !(entry.RepoTags == null || isStringArray(entry.RepoTags)) ||
        manifest.length !== 1
      )
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: manifest.json must describe exactly one image`,
        );
      const configBytes = await readFile(await archiveFile(outer, entry.Config, archive)).catch(() => {
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
      const config = parseImageConfig(configBytes, archive);
      const diffIds = config.rootfs?.diff_ids ?? [];
      if (diffIds.length !== entry.Layers.length)
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import ${archive}: config lists ${diffIds.length} layers, manifest ${entry.Layers.length}`,
        );
      const layerFiles: string[] = [];
      for (const [i, l] of entry.Layers.entries()) {
        if (typeof l !== 'string')
          throw new FormError(
            'RUNTIME_IMAGE_INVALID',
            `Cannot import ${archive}: a layer in manifest.json is not a path`,
          );
        const file = await archiveFile(outer, l, archive);
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
      for (const f of layerFiles) await applyLayer(f, rootfs, this.idShift ? { idShift: this.idShift } : {});
      const img: StoredImage = {
        id,
        repoTags: entry.RepoTags ?? [],
        config: config.config ?? {},
        rootfs: join(this.imageDir(id), 'rootfs'),
        importedAt: new Date().toISOString(),
        ...(this.idShift ? { idShift: this.idShift } : {}),
      };
      const final = this.imageDir(id);
      await rm(final, { recursive: true, force: true });
      await mkdir(final, { mode: 0o711 });
      await chmod(final, 0o711);
      await chmod(rootfs, 0o755);
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

/** Image file modes without setuid/setgid (containers run with no-new-privileges anyway). */
const MODE_MASK = 0o1777;
const canChown = process.getuid?.() === 0;

function outside(what: string, p: string): FormError {
  return new FormError('RUNTIME_IMAGE_INVALID', `Cannot import image: ${what} has an entry outside the root (${p})`, {
    hint: 'Image layers may only name paths inside the image; rebuild the image without it.',
  });
}

/** An archive path as checked components: no absolute path, no `..`, no NUL. `[]` is the root itself. */
export function archivePath(p: string, what: string): string[] {
  if (p.startsWith('/') || p.includes('\0')) throw outside(what, p);
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw outside(what, p);
  return parts;
}

/**
 * The directory `parts` names under `root`, walked one component at a time with lstat: each must be a
 * real directory, never a symlink, so nothing an image wrote can lead out of the root. Missing
 * components are created when `create`, else the result is undefined.
 */
async function realDir(root: string, parts: string[], create: boolean, what: string): Promise<string | undefined> {
  let dir = root;
  for (const c of parts) {
    dir = join(dir, c);
    const st = await lstat(dir).catch(() => undefined);
    if (st?.isDirectory()) continue;
    if (st)
      throw new FormError(
        'RUNTIME_IMAGE_INVALID',
        `Cannot import image: ${what} goes through /${relative(root, dir)}, which is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}`,
        { hint: 'Image layers may not write or delete through a link; rebuild the image without it.' },
      );
    if (!create) return undefined;
    await mkdir(dir, { mode: 0o755 });
  }
  return dir;
}

/** Remove what is at `p` (a file, link or directory tree; never what a link points to). */
async function clear(p: string): Promise<void> {
  await rm(p, { recursive: true, force: true });
}

interface ExtractOptions {
  /** Added to every uid/gid (a user namespace's host range). */
  idShift?: number;
  /** Entry types other than file and directory that are allowed. */
  links: boolean;
  what: string;
}

/** Write one checked entry under `root`, never following a link. */
async function extractEntry(root: string, e: TarEntry, body: AsyncIterable<Buffer>, o: ExtractOptions): Promise<void> {
  const parts = archivePath(e.path, o.what);
  const name = parts.at(-1);
  if (name === undefined) {
    if (e.type === 'dir') return; // the root itself
    throw outside(o.what, e.path);
  }
  const parent = (await realDir(root, parts.slice(0, -1), true, `${o.what} entry ${e.path}`)) as string;
  const p = join(parent, name);
  const owner = async (f: (uid: number, gid: number) => Promise<void>) => {
    if (canChown) await f(e.uid + (o.idShift ?? 0), e.gid + (o.idShift ?? 0));
  };
  const mode = e.mode & MODE_MASK;
  const existing = await lstat(p).catch(() => undefined);
  switch (e.type) {
    case 'dir':
      if (!existing?.isDirectory()) {
        if (existing) await clear(p);
        await mkdir(p);
      }
      await chmod(p, mode);
      await owner((u, g) => lchown(p, u, g));
      return;
    case 'file': {
      if (existing) await clear(p);
      const fh = await open(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        await fh.writeFile(body);
        await fh.chmod(mode);
        await owner((u, g) => fh.chown(u, g));
      } finally {
        await fh.close();
      }
      return;
    }
    case 'symlink':
      if (!o.links) break;
      // kept verbatim: an absolute or `..` target resolves inside the container's root, and we never follow it
      if (existing) await clear(p);
      await symlink(e.linkpath, p);
      await owner((u, g) => lchown(p, u, g));
      return;
    case 'hardlink': {
      if (!o.links) break;
      const tparts = archivePath(e.linkpath, `${o.what} hard link`);
      const tname = tparts.at(-1);
      const tdir = tname && (await realDir(root, tparts.slice(0, -1), false, `${o.what} hard link ${e.path}`));
      const target = tdir ? join(tdir, tname) : undefined;
      const tst = target ? await lstat(target).catch(() => undefined) : undefined;
      if (!target || !tst?.isFile())
        throw new FormError(
          'RUNTIME_IMAGE_INVALID',
          `Cannot import image: ${o.what} hard link ${e.path} points at ${e.linkpath}, which is not a regular file in the image`,
        );
      if (target === p) return;
      if (existing) await clear(p);
      await link(target, p);
      return;
    }
  }
  throw new FormError(
    'RUNTIME_IMAGE_INVALID',
    `Cannot import image: ${o.what} entry ${e.path} is a ${TYPE_NAMES[e.type]} (device files and FIFOs are not allowed)`,
  );
}

/** Unpack a whole (outer) archive into an empty directory: files, directories and links, all checked. */
async function extractArchive(file: string, dir: string, what: string): Promise<void> {
  await readTarFile(file, (e, body) => extractEntry(dir, e, body, { links: true, what }), { what });
}

/** A file the (outer) archive holds, following its own links only while they stay inside it. */
async function archiveFile(dir: string, rel: string, archive: string): Promise<string> {
  const parts = archivePath(rel, 'manifest');
  const root = await realpath(dir);
  const p = await realpath(join(root, ...parts)).catch(() => undefined);
  if (!p || !p.startsWith(root + sep))
    throw new FormError('RUNTIME_IMAGE_INVALID', `Cannot import ${archive}: ${rel} named in manifest.json is missing`);
  return p;
}

/**
 * Apply one layer tar (plain or gzip) on top of `rootfs`: first its whiteouts (`.wh.<name>` deletes a
 * lower file, `.wh..wh..opq` empties a lower directory), then its entries. Every path is walked under
 * the root with lstat, so no link (from this or a lower layer) is ever followed: a write, delete or
 * hard link through one is refused, as are absolute and `..` paths, devices and FIFOs. Symlinks are
 * stored as the image says (their targets resolve inside the container). uid/gid are kept (plus
 * `idShift`); setuid/setgid bits are dropped.
 */
export async function applyLayer(layerFile: string, rootfs: string, opts: { idShift?: number } = {}): Promise<void> {
  const what = 'layer';
  const whiteouts: string[][] = [];
  const opaque: string[][] = [];
  const problems: string[] = [];
  await readTarFile(
    layerFile,
    (e) => {
      try {
        const parts = archivePath(e.path, what);
        if (e.type === 'hardlink') archivePath(e.linkpath, `${what} hard link`);
        if (!ALLOWED_TYPES.has(e.type))
          problems.push(`${e.path} is a ${TYPE_NAMES[e.type]} (device files and FIFOs are not allowed)`);
        const base = parts.at(-1);
        if (base === '.wh..wh..opq') opaque.push(parts.slice(0, -1));
        else if (base?.startsWith('.wh.')) whiteouts.push([...parts.slice(0, -1), base.slice(4)]);
      } catch (err) {
        problems.push((err as Error).message);
      }
    },
    { what },
  );
  if (problems.length > 0)
    throw new FormError(
      'RUNTIME_IMAGE_INVALID',
      `Cannot import image: layer refused: ${problems.slice(0, 5).join('; ')}`,
    );
  const root = resolve(rootfs);
  for (const w of whiteouts) {
    const name = w.at(-1);
    if (!name || name === '..' || name === '.') throw outside(what, w.join('/'));
    const dir = await realDir(root, w.slice(0, -1), false, `whiteout ${w.join('/')}`);
    if (dir) await clear(join(dir, name));
  }
  for (const o of opaque) {
    const d = await realDir(root, o, false, `opaque whiteout in /${o.join('/')}`);
    if (d) for (const n of await readdir(d)) await clear(join(d, n));
  }
  await readTarFile(
    layerFile,
    async (e, body) => {
      if (archivePath(e.path, what).at(-1)?.startsWith('.wh.')) return;
      await extractEntry(root, e, body, { links: true, what, ...(opts.idShift ? { idShift: opts.idShift } : {}) });
    },
    { what },
  );
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
