import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Header } from 'tar';

/** One entry of a hand-made tar: a File unless `type` says otherwise (tar's header type names). */
export interface HandTarEntry {
  path: string;
  type?: string;
  linkpath?: string;
  body?: string;
}

/**
 * A tar made by hand, header by header, so tests can write the hostile entries (`../x`, absolute paths,
 * devices, links out) that tar's own `create` would never write. Directories get mode 0755, the rest 0644.
 */
export function handTar(entries: HandTarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const h = new Header({
      path: e.path,
      type: (e.type ?? 'File') as never,
      mode: e.type === 'Directory' ? 0o755 : 0o644,
      size: body.length,
      linkpath: e.linkpath ?? '',
      mtime: new Date(0),
    });
    const block = Buffer.alloc(512);
    h.encode(block, 0);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Write `files` (path relative to `dir` → content) below `dir`, making folders as needed; returns `dir`. */
export function writeTree(dir: string, files: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  return dir;
}
