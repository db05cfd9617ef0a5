import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hex } from '@formation/identity';
import { FormError } from '@formation/interface';
import type { ModuleTag, RuntimeModule } from './types.ts';

export const MODULE_FORMAT_PREFIX = 'web.vmdocker-';

/** Image name and id a module asks for. */
export interface ModuleImage {
  name: string;
  id: string;
}

function tagValue(tags: ModuleTag[], name: string): string | undefined {
  return tags.find((t) => t.name === name)?.value;
}

/**
 * Check a module the way VMDocker's checkModule does: format prefix `web.vmdocker-`, non-empty
 * `Image-Name` and `Image-ID` tags (and the id must look like `sha256:<64 hex>`). Accepts the
 * seed's JSON spelling (`ModuleFormat`, `Tags: [{name, value}]`) and ours (`moduleFormat`, `tags`).
 *
 * @example
 * const mod = parseModule({ ModuleFormat: 'web.vmdocker-js-ao.v0.1.0', Tags: [{ name: 'Image-Name', value: 'x:1' }, ...] });
 */
export function parseModule(raw: unknown, idHint?: string): RuntimeModule {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new FormError('RUNTIME_MODULE_INVALID', 'Cannot accept module: it is not a JSON object');
  const o = raw as Record<string, unknown>;
  const format = o.moduleFormat ?? o.ModuleFormat;
  const rawTags = o.tags ?? o.Tags ?? [];
  const problems: string[] = [];
  if (typeof format !== 'string' || !format.startsWith(MODULE_FORMAT_PREFIX))
    problems.push(`ModuleFormat must start with "${MODULE_FORMAT_PREFIX}" (got ${JSON.stringify(format ?? null)})`);
  const tags: ModuleTag[] = [];
  if (!Array.isArray(rawTags)) problems.push('Tags must be a list of {name, value}');
  else
    for (const t of rawTags as Array<Record<string, unknown>>) {
      const name = t?.name ?? t?.Name;
      const value = t?.value ?? t?.Value;
      if (typeof name !== 'string' || typeof value !== 'string')
        problems.push('every tag needs a string name and value');
      else tags.push({ name, value });
    }
  for (const required of ['Image-Name', 'Image-ID']) {
    const v = tagValue(tags, required);
    if (v === undefined) problems.push(`tag ${required} is missing`);
    else if (v.trim() === '') problems.push(`tag ${required} is empty`);
  }
  const imageId = tagValue(tags, 'Image-ID');
  if (imageId && imageId.trim() !== '' && !/^sha256:[0-9a-f]{64}$/.test(imageId))
    problems.push(`tag Image-ID must be sha256:<64 hex digits> (got ${JSON.stringify(imageId)})`);
  if (problems.length > 0)
    throw new FormError('RUNTIME_MODULE_INVALID', `Cannot accept module: ${problems.join('; ')}`, {
      hint: 'A module needs ModuleFormat "web.vmdocker-…" and tags Image-Name and Image-ID (sha256:… of the image config).',
      details: { problems },
    });
  const body = { moduleFormat: format as string, tags };
  const id = typeof o.id === 'string' && o.id !== '' ? o.id : (idHint ?? sha256Hex(JSON.stringify(body)));
  return { id, ...body };
}

/** The image a (valid) module names. */
export function moduleImage(mod: RuntimeModule): ModuleImage {
  return { name: tagValue(mod.tags, 'Image-Name') ?? '', id: tagValue(mod.tags, 'Image-ID') ?? '' };
}

/** The seed's JSON spelling of a module, as written to `mod-<id>.json`. */
export function moduleToJson(mod: RuntimeModule): {
  id: string;
  ModuleFormat: string;
  Tags: Array<{ name: string; value: string }>;
} {
  return { id: mod.id, ModuleFormat: mod.moduleFormat, Tags: mod.tags.map((t) => ({ name: t.name, value: t.value })) };
}

/**
 * Load every `mod-*.json` in a directory. A bad file is reported in `errors` (with its name) and
 * skipped; the others still load.
 */
export async function loadModulesDir(dir: string): Promise<{ modules: RuntimeModule[]; errors: string[] }> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /^mod-.+\.json$/.test(n)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { modules: [], errors: [] };
    throw err;
  }
  const modules: RuntimeModule[] = [];
  const errors: string[] = [];
  for (const n of names) {
    try {
      const raw = JSON.parse(await readFile(join(dir, n), 'utf8')) as unknown;
      modules.push(parseModule(raw, n.slice(4, -5)));
    } catch (err) {
      errors.push(`${n}: ${(err as Error).message}`);
    }
  }
  return { modules, errors };
}
