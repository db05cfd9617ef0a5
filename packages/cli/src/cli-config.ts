import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FormError, formHome } from '@formation/interface';

/** The developer kit config written by `form kit init`: `$FORM_HOME/config.json`. */
export interface KitConfig {
  version: 1;
  /** Base URL of the node the CLI talks to (ports per service are added by the client). */
  node: string;
  /**
   * The node's public key (compressed secp256k1, hex) its TLS certificate must be bound to: every
   * https:// call to this node's host is pinned to it (`form kit init --node https://… [--node-key …]`).
   */
  nodeKey?: string;
  /** Whether this machine joins formnet permanently (else `form ssh` joins temporarily). */
  joinFormnet: boolean;
  /** Path of the developer key. */
  keyPath: string;
  createdAt: string;
}

export function kitConfigPath(home: string = formHome()): string {
  return join(home, 'config.json');
}

export async function readKitConfig(path: string = kitConfigPath()): Promise<KitConfig | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FormError('CONFIG_INVALID', `Cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as KitConfig;
  } catch {
    throw new FormError('CONFIG_INVALID', `Cannot read ${path}: it is not valid JSON`, {
      hint: 'Fix it by hand or rerun `form kit init --force`.',
    });
  }
}

export async function writeKitConfig(cfg: KitConfig, path: string = kitConfigPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

/** Check a node key given on the command line (`--node-key`, FORM_NODE_KEY); returns it lower case. */
export function parseNodeKey(value: string): string {
  const k = value.trim().toLowerCase().replace(/^0x/, '');
  if (!/^0[23][0-9a-f]{64}$/.test(k)) {
    throw new FormError(
      'CLI_USAGE',
      `Cannot use node key "${value}": it is not a node public key (66 hex digits, 02… or 03…)`,
      {
        hint: 'Copy it from the node: `form node status --json` (nodeKey), or node.json in its data dir.',
      },
    );
  }
  return k;
}

/** Check a node URL given on the command line; returns it without a trailing slash. */
export function parseNodeUrl(value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new FormError('CLI_USAGE', `Cannot use node address "${value}": it is not a URL`, {
      hint: 'Give it as http://HOST[:PORT], e.g. http://127.0.0.1',
    });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new FormError('CLI_USAGE', `Cannot use node address "${value}": only http:// and https:// are supported`);
  }
  return value.replace(/\/+$/, '');
}
