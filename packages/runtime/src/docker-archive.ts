import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';

/** The part of a Docker image config that says how to run it. */
export interface ImageRunConfig {
  Entrypoint?: string[];
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
}

/** One layer: a directory to tar, or an existing (uncompressed) layer tar. */
export type LayerSource = { dir: string } | { tarFile: string };

/** sha256 of a file as `sha256:<hex>`; gunzips first when `gunzip` (diff ids are of uncompressed tars). */
export async function sha256File(path: string, gunzip = false): Promise<string> {
  const h = createHash('sha256');
  const src = createReadStream(path);
  if (gunzip) await pipeline(src, createGunzip(), h);
  else await pipeline(src, h);
  return `sha256:${h.digest('hex')}`;
}

async function walk(root: string, dir = root, out: string[] = []): Promise<string[]> {
  const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const e of entries) {
    const p = join(dir, e.name);
    out.push(relative(root, p));
    if (e.isDirectory()) await walk(root, p, out);
  }
  return out;
}

/**
 * Tar a directory reproducibly: sorted entries, no owner names, a fixed mtime. The same tree gives
 * the same bytes, so the same image id.
 */
export async function tarDirectory(dir: string, file: string, opts: { gzip?: boolean } = {}): Promise<void> {
  const entries = await walk(dir);
  await tar.c(
    { cwd: dir, file, portable: true, noDirRecurse: true, mtime: new Date(0), gzip: opts.gzip ?? false },
    entries.length > 0 ? entries : ['.'],
  );
}

/**
 * Write a `docker save`-format archive (manifest.json, <config>.json, <layer>/layer.tar) without a
 * Docker engine. Returns the image id Docker would report: sha256 of the config JSON.
 *
 * @example
 * const { imageId } = await writeDockerArchive({ out: 'img.tar', repoTag: 'x:1', layers: [{ dir: 'rootfs' }], config: { Cmd: ['/bin/app'] } });
 */
export async function writeDockerArchive(opts: {
  out: string;
  repoTag: string;
  layers: LayerSource[];
  config: ImageRunConfig;
  gzip?: boolean;
}): Promise<{ imageId: string; configJson: string }> {
  const work = await mkdtemp(join(tmpdir(), 'formation-runtime-archive-'));
  try {
    const diffIds: string[] = [];
    const layerPaths: string[] = [];
    for (const [i, layer] of opts.layers.entries()) {
      const tmp = join(work, `layer-${i}.tar`);
      if ('dir' in layer) await tarDirectory(layer.dir, tmp);
      else await copyFile(layer.tarFile, tmp);
      const diffId = await sha256File(tmp);
      const hex = diffId.slice(7);
      await mkdir(join(work, hex), { recursive: true });
      await copyFile(tmp, join(work, hex, 'layer.tar'));
      await rm(tmp);
      diffIds.push(diffId);
      layerPaths.push(`${hex}/layer.tar`);
    }
    const config = {
      architecture: 'amd64',
      os: 'linux',
      config: opts.config,
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map(() => ({ created: '1970-01-01T00:00:00Z', created_by: 'formation runtime image builder' })),
    };
    const configJson = JSON.stringify(config);
    const imageHex = createHash('sha256').update(configJson).digest('hex');
    await writeFile(join(work, `${imageHex}.json`), configJson);
    const manifest = [{ Config: `${imageHex}.json`, RepoTags: [opts.repoTag], Layers: layerPaths }];
    await writeFile(join(work, 'manifest.json'), JSON.stringify(manifest));
    await tarDirectory(work, opts.out, { gzip: opts.gzip ?? false });
    return { imageId: `sha256:${imageHex}`, configJson };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
