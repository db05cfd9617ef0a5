import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormError } from '@formation/interface';
import { ownedDir } from './dirs.ts';
import { writeDockerArchive } from './docker-archive.ts';

export interface BuiltImage {
  archive: string;
  imageId: string;
  imageName: string;
}

/** Shared libraries a binary needs, as real files, from `ldd`. */
function sharedLibraries(binary: string): string[] {
  let out: string;
  try {
    out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  } catch (err) {
    throw new FormError(
      'HOST_UNSUPPORTED',
      `Cannot build the JS runtime image: ldd ${binary} failed (${(err as Error).message})`,
    );
  }
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

/** What goes into a Node-based runtime image besides Node and its libraries. */
export interface NodeImageSpec {
  imageName: string;
  /** File name prefix of the cached archive (older archives with this prefix are removed). */
  prefix: string;
  /** Files copied into the image: host path -> path in the image. */
  files: Array<{ src: string; dest: string }>;
  /** Script the image runs with node. */
  main: string;
}

/**
 * Build a runtime image around the Node binary this project runs on, without Docker: a minimal root
 * filesystem with node, the shared libraries `ldd` lists and the spec's files, saved as a
 * `docker save` archive. Cached in `cacheDir` by the inputs' identity, so the second call is instant.
 */
export async function buildNodeImage(
  cacheDir: string,
  spec: NodeImageSpec,
  opts: { gzip?: boolean } = {},
): Promise<BuiltImage> {
  const node = await realpath(process.execPath);
  const libs = sharedLibraries(node);
  const contents = await Promise.all(spec.files.map((f) => readFile(f.src)));
  const st = await stat(node);
  const h = createHash('sha256').update(
    JSON.stringify({ v: 3, node, size: st.size, mtime: st.mtimeMs, libs, gzip: opts.gzip ?? false }),
  );
  spec.files.forEach((f, i) => {
    h.update(f.dest);
    h.update(contents[i] as Buffer);
  });
  const key = h.digest('hex').slice(0, 16);
  await ownedDir(cacheDir);
  const archive = join(cacheDir, `${spec.prefix}-${key}.tar${opts.gzip ? '.gz' : ''}`);
  const idFile = `${archive}.id`;
  try {
    const imageId = (await readFile(idFile, 'utf8')).trim();
    await stat(archive);
    return { archive, imageId, imageName: spec.imageName };
  } catch {
    // not cached yet
  }
  const root = join(cacheDir, `rootfs-${key}-${process.pid}`);
  await rm(root, { recursive: true, force: true });
  try {
    for (const d of ['usr/local/bin', 'app', 'workspace', 'run/formrt', 'tmp', 'proc', 'dev', 'sys', 'etc'])
      await mkdir(join(root, d), { recursive: true });
    // runc 1.1 gives the /tmp tmpfs the mode of the directory it covers: make that 1777
    await chmod(join(root, 'tmp'), 0o1777);
    await copyFile(node, join(root, 'usr/local/bin/node'));
    for (const lib of libs) {
      await mkdir(join(root, dirname(lib)), { recursive: true });
      await copyFile(await realpath(lib), join(root, lib));
    }
    for (const [i, f] of spec.files.entries()) {
      await mkdir(join(root, dirname(f.dest)), { recursive: true });
      await writeFile(join(root, f.dest), contents[i] as Buffer);
    }
    await writeFile(
      join(root, 'etc/passwd'),
      'root:x:0:0:root:/:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n',
    );
    await writeFile(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    const tmp = `${archive}.tmp-${process.pid}`;
    const { imageId } = await writeDockerArchive({
      out: tmp,
      repoTag: spec.imageName,
      layers: [{ dir: root }],
      config: {
        Entrypoint: ['/usr/local/bin/node', spec.main],
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_OPTIONS=--max-old-space-size=96'],
        WorkingDir: '/',
      },
      gzip: opts.gzip ?? false,
    });
    await rename(tmp, archive);
    await writeFile(idFile, imageId);
    // older builds (another Node binary or server version) are dead weight: ~120 MiB each
    const old = new RegExp(`^${spec.prefix}-[0-9a-f]{16}\\.tar`);
    for (const n of await readdir(cacheDir))
      if (old.test(n) && !n.startsWith(`${spec.prefix}-${key}.`)) await rm(join(cacheDir, n), { force: true });
    return { archive, imageId, imageName: spec.imageName };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Files of `src/container/` as `NodeImageSpec` files in the image's `/app`, always with the
 * runtime container protocol (`vmm-protocol.mjs`) every runtime server imports.
 */
export function containerFiles(...names: string[]): Array<{ src: string; dest: string }> {
  return ['vmm-protocol.mjs', ...names].map((n) => ({
    src: fileURLToPath(new URL(`./container/${n}`, import.meta.url)),
    dest: `app/${n}`,
  }));
}

/** A module in seed 004's JSON spelling. */
export interface ImageModule {
  ModuleFormat: string;
  Tags: Array<{ name: string; value: string }>;
}

/** A module (seed 004 JSON spelling) whose processes run on the image `imageName` with id `imageId`. */
export function imageModule(
  moduleFormat: string,
  imageName: string,
  imageId: string,
  moreTags: Array<{ name: string; value: string }> = [],
): ImageModule {
  return {
    ModuleFormat: moduleFormat,
    Tags: [{ name: 'Image-Name', value: imageName }, { name: 'Image-ID', value: imageId }, ...moreTags],
  };
}
