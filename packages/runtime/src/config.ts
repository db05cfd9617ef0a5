import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type KeyPair, keyPairFromPrivate } from '@formation/identity';
import { FormError, formHome } from '@formation/interface';
import { loadConfig } from '@formation/service';
import { type Static, Type } from '@sinclair/typebox';
import { parse as parseYaml } from 'yaml';

/**
 * The runtime's configuration: seed 004's `config.yaml` fields (port, redisURL, nodeName, nodeDesc,
 * nodeURL, prvKey or keyfilePath, joinNetwork; ginMode/arweaveURL/hymxURL are accepted and unused)
 * plus Formation's own (where data lives, container limits, time limits).
 */
export const RuntimeConfigSchema = Type.Object({
  port: Type.Union(
    [Type.String({ pattern: '^([A-Za-z0-9.\\-\\[\\]:]*):(\\d{1,5})$' }), Type.Integer({ minimum: 0, maximum: 65535 })],
    {
      default: ':8080',
      description: 'HTTP listen address as in seed 004 (":8080", "127.0.0.1:8080") or a port number',
    },
  ),
  redisURL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379/0' }),
  nodeName: Type.String({ minLength: 1, maxLength: 64 }),
  nodeDesc: Type.String({ maxLength: 256, default: '' }),
  nodeURL: Type.String({ pattern: '^https?://[^\\s]+$' }),
  prvKey: Type.Optional(Type.String({ pattern: '^(0x)?[0-9a-fA-F]{64}$' })),
  keyfilePath: Type.Optional(Type.String()),
  joinNetwork: Type.Boolean({ default: false }),
  ginMode: Type.Optional(Type.String()),
  arweaveURL: Type.Optional(Type.String()),
  hymxURL: Type.Optional(Type.String()),
  // Formation's own
  /** Addresses (0x…) allowed to import images and register modules; empty = nobody (images are host files). */
  admins: Type.Array(Type.String({ pattern: '^0x[0-9a-fA-F]{40}$' }), { default: [] }),
  dataDir: Type.String({ minLength: 1, default: join(formHome(), 'runtime') }),
  /** Directory of `mod-*.json` module files (default `<dataDir>/mod`). */
  modulesDir: Type.Optional(Type.String({ minLength: 1 })),
  runcRoot: Type.String({ minLength: 1, default: '/run/formation-runtime' }),
  runc: Type.String({ minLength: 1, default: 'runc' }),
  /** Containers in a user namespace: their ids 0…65535 are host ids userNamespaceHostId… (unprivileged). */
  userNamespace: Type.Boolean({ default: true }),
  userNamespaceHostId: Type.Integer({ minimum: 65536, maximum: 4_000_000_000, default: 1_000_000_000 }),
  memoryMiB: Type.Integer({ minimum: 32, maximum: 65536, default: 256 }),
  cpus: Type.Number({ exclusiveMinimum: 0, maximum: 256, default: 1 }),
  pids: Type.Integer({ minimum: 8, maximum: 65536, default: 256 }),
  applyTimeoutMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 2000 }),
  checkpointEvery: Type.Integer({ minimum: 1, default: 100 }),
  monitorIntervalMs: Type.Integer({ minimum: 0, default: 1000 }),
});

export type RuntimeConfig = Static<typeof RuntimeConfigSchema>;

/** Host and port to listen on, from seed 004's `port` (":8080" listens on loopback here; give a host to widen). */
export function listenAddress(cfg: RuntimeConfig): { host: string; port: number } {
  if (typeof cfg.port === 'number') return { host: '127.0.0.1', port: cfg.port };
  const i = cfg.port.lastIndexOf(':');
  const host = cfg.port.slice(0, i).replace(/^\[|\]$/g, '');
  return { host: host === '' ? '127.0.0.1' : host, port: Number(cfg.port.slice(i + 1)) };
}

/**
 * Load and validate: YAML (or JSON) file < `FORM_RUNTIME_*` env < flags. Besides the schema: exactly
 * one of prvKey / keyfilePath, the key must load, and joinNetwork must be false (Formation nodes do
 * not stake into the HyMatrix network).
 *
 * @example
 * const cfg = loadRuntimeConfig({ file: 'config.yaml' });
 */
export function loadRuntimeConfig(
  sources: { file?: string; env?: NodeJS.ProcessEnv; flags?: Record<string, unknown> } = {},
): RuntimeConfig {
  let fromFile: Record<string, unknown> = {};
  if (sources.file) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (err) {
      throw new FormError('CONFIG_INVALID', `Cannot read config file ${sources.file}: ${(err as Error).message}`);
    }
    try {
      // failsafe: every scalar stays a string (the seed's unquoted `prvKey: 0x64dd…` would otherwise
      // become a hex integer); the schema converts booleans and numbers afterwards
      const parsed = parseYaml(text, { schema: 'failsafe' }) as unknown;
      if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed)))
        throw new Error('the top level must be a mapping');
      fromFile = (parsed ?? {}) as Record<string, unknown>;
    } catch (err) {
      throw new FormError('CONFIG_INVALID', `Cannot parse config file ${sources.file}: ${(err as Error).message}`);
    }
    // YAML `keyfilePath:` with nothing after it means "not set"
    for (const [k, v] of Object.entries(fromFile)) if (v === null || v === '') delete fromFile[k];
  }
  const env = sources.env ?? {};
  const fromEnv: Record<string, string | undefined> = {
    port: env.FORM_RUNTIME_PORT,
    redisURL: env.FORM_RUNTIME_REDIS_URL,
    nodeURL: env.FORM_RUNTIME_NODE_URL,
    dataDir: env.FORM_RUNTIME_DATA_DIR,
  };
  const merged: Record<string, unknown> = { ...fromFile };
  for (const [k, v] of Object.entries(fromEnv)) if (v !== undefined && v !== '') merged[k] = v;
  if (env.FORM_RUNTIME_ADMINS)
    merged.admins = env.FORM_RUNTIME_ADMINS.split(',')
      .map((a) => a.trim())
      .filter(Boolean);
  for (const [k, v] of Object.entries(sources.flags ?? {})) if (v !== undefined) merged[k] = v;
  // keep ":8080" a string (Value.Convert would leave it, but a bare "8080" from env becomes a port number)
  if (typeof merged.port === 'string' && /^\d+$/.test(merged.port)) merged.port = Number(merged.port);
  const cfg = loadConfig(RuntimeConfigSchema, { flags: merged });
  const problems: string[] = [];
  if (!cfg.prvKey && !cfg.keyfilePath) problems.push('  /prvKey: set prvKey or keyfilePath (the node identity)');
  if (cfg.prvKey && cfg.keyfilePath) problems.push('  /keyfilePath: set prvKey or keyfilePath, not both');
  if (cfg.joinNetwork)
    problems.push(
      '  /joinNetwork: true is not supported (Formation nodes do not stake into the HyMatrix network); set false',
    );
  if (problems.length === 0) {
    try {
      runtimeKey(cfg);
    } catch (err) {
      problems.push(`  /${cfg.prvKey ? 'prvKey' : 'keyfilePath'}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0)
    throw new FormError('CONFIG_INVALID', `Cannot start the runtime: invalid configuration\n${problems.join('\n')}`, {
      hint: 'Fix these values in config.yaml, the environment or flags.',
    });
  return cfg;
}

/**
 * The node key: prvKey (hex, as in seed 004), or keyfilePath: a file holding the hex private key, or
 * a JSON object with `privateKey` (the format of Formation's own key files).
 */
export function runtimeKey(cfg: RuntimeConfig): KeyPair {
  if (cfg.prvKey) return keyPairFromPrivate(cfg.prvKey);
  if (!cfg.keyfilePath) throw new FormError('CONFIG_INVALID', 'Cannot load the node key: set prvKey or keyfilePath');
  let text: string;
  try {
    text = readFileSync(cfg.keyfilePath, 'utf8').trim();
  } catch (err) {
    throw new FormError('CONFIG_INVALID', `Cannot read key file ${cfg.keyfilePath}: ${(err as Error).message}`);
  }
  if (text.startsWith('{')) {
    const o = JSON.parse(text) as Record<string, unknown>;
    const k = o.privateKey ?? o.prvKey ?? o.private_key;
    if (typeof k !== 'string')
      throw new FormError('CONFIG_INVALID', `Cannot load key file ${cfg.keyfilePath}: no privateKey field`);
    return keyPairFromPrivate(k);
  }
  return keyPairFromPrivate(text);
}
