import { DEFAULT_PORTS, formHome } from '@formation/interface';
import { loadConfig } from '@formation/service';
import { type Static, Type } from '@sinclair/typebox';

/**
 * Default cache of base images and package layers. Shared by every data dir on the host (builds take
 * locks), so several nodes of a devnet and `form pack build --local` build the base only once.
 */
export const DEFAULT_PACK_CACHE = '/var/tmp/formation-pack-cache';

/** Configuration of the pack service (file + FORM_* env + flags; see loadPackConfig). */
export const PackConfigSchema = Type.Object({
  dataDir: Type.String({ minLength: 1, description: 'Formpacks live in <dataDir>/formpacks/<id>/' }),
  cacheDir: Type.String({
    default: '',
    description: 'base rootfs, package layers, .deb cache (shared by data dirs); default DEFAULT_PACK_CACHE',
  }),
  host: Type.String({ default: '127.0.0.1' }),
  port: Type.Integer({ default: DEFAULT_PORTS.pack, minimum: 0, maximum: 65535 }),
  suite: Type.String({ default: 'bookworm', pattern: '^[a-z]+$' }),
  mirror: Type.String({ default: '' }),
  kernel: Type.String({ default: '' }),
  maxUploadBytes: Type.Integer({ default: 1024 * 2 ** 20, minimum: 1 }),
  maxContextBytes: Type.Integer({ default: 2 * 2 ** 30, minimum: 1 }),
  maxConcurrentBuilds: Type.Integer({ default: 1, minimum: 1, maximum: 16 }),
  maxQueuedBuilds: Type.Integer({ default: 64, minimum: 1, description: 'builds waiting on the node' }),
  maxQueuedPerOwner: Type.Integer({ default: 8, minimum: 1, description: 'builds one signer may have waiting' }),
  buildTimeoutMs: Type.Integer({
    default: 10 * 60_000,
    minimum: 1000,
    description: 'longest a whole build may take (then PACK_BUILD_TIMEOUT)',
  }),
  runTimeoutMs: Type.Integer({
    default: 10 * 60_000,
    minimum: 1000,
    description: 'longest one RUN step may take (then PACK_BUILD_TIMEOUT)',
  }),
});
export type PackConfig = Static<typeof PackConfigSchema>;

/**
 * Load the pack service config: defaults < JSON file < env (FORM_HOME, FORM_PACK_CACHE, FORM_PACK_HOST,
 * FORM_PACK_PORT, FORM_PACK_MIRROR, FORM_PACK_KERNEL) < flags.
 */
export function loadPackConfig(
  sources: { file?: string; env?: NodeJS.ProcessEnv; flags?: Partial<PackConfig> } = {},
): PackConfig {
  const env = sources.env ?? process.env;
  const cfg = loadConfig(PackConfigSchema, {
    file: sources.file,
    env: {
      dataDir: formHome(env),
      cacheDir: env.FORM_PACK_CACHE,
      host: env.FORM_PACK_HOST,
      port: env.FORM_PACK_PORT,
      mirror: env.FORM_PACK_MIRROR,
      kernel: env.FORM_PACK_KERNEL,
    },
    flags: sources.flags ?? {},
  });
  return { ...cfg, cacheDir: cfg.cacheDir || DEFAULT_PACK_CACHE };
}
