import { readFileSync } from 'node:fs';
import { FormError } from '@formation/interface';
import type { Static, TObject } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * One typed configuration object per service, merged from (lowest first) the schema defaults, a JSON
 * config file, environment variables and flags, then validated as a whole. Every bad value becomes one
 * line of a single CONFIG_INVALID error, so an operator fixes them all in one go.
 *
 * @example
 * const cfg = loadConfig(VmmConfig, { file: env.VMM_CONFIG_PATH, env: { apiPort: env.VMM_API_PORT }, flags });
 */
export interface ConfigSources {
  /** Path of a JSON config file; a missing file is an error only when `fileRequired`. */
  file?: string | undefined;
  fileRequired?: boolean;
  /** Values from the environment (strings; converted by the schema). Undefined entries are ignored. */
  env?: Record<string, string | undefined>;
  /** Values from flags or code (already typed). Undefined entries are ignored. */
  flags?: Record<string, unknown>;
}

export function loadConfig<T extends TObject>(schema: T, sources: ConfigSources = {}): Static<T> {
  let fromFile: Record<string, unknown> = {};
  if (sources.file) {
    try {
      fromFile = JSON.parse(readFileSync(sources.file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'ENOENT' || sources.fileRequired) {
        throw new FormError(
          'CONFIG_INVALID',
          `Cannot read config file ${sources.file}: ${e.code === 'ENOENT' ? 'it does not exist' : e.message}`,
          {
            hint: 'Fix the path or the JSON syntax.',
          },
        );
      }
    }
  }
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [k, v] of Object.entries(sources.env ?? {})) if (v !== undefined && v !== '') merged[k] = v;
  for (const [k, v] of Object.entries(sources.flags ?? {})) if (v !== undefined) merged[k] = v;
  const withDefaults = Value.Default(schema, Value.Convert(schema, { ...merged })) as Record<string, unknown>;
  // Value.Convert truncates "1.5" (or 1.5) for an integer to 1 without a word: an operator's typo would
  // run with another value. A top-level integer given as a non-whole number keeps it, and is refused below.
  for (const [k, v] of Object.entries(merged)) {
    const prop = (schema.properties as Record<string, { type?: unknown }>)[k];
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (prop?.type === 'integer' && typeof n === 'number' && Number.isFinite(n) && !Number.isInteger(n)) {
      withDefaults[k] = n;
    }
  }
  const errors = [...Value.Errors(schema, withDefaults)];
  if (errors.length > 0) {
    const lines = errors.map((e) => `  ${e.path || '/'}: ${e.message} (got ${JSON.stringify(e.value)})`);
    throw new FormError('CONFIG_INVALID', `Cannot start: invalid configuration\n${[...new Set(lines)].join('\n')}`, {
      hint: 'Fix these values in the config file, environment or flags.',
    });
  }
  return withDefaults as Static<T>;
}
