import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FormError, formHome } from '@formation/interface';
import { bytesToHex } from '@noble/hashes/utils.js';
import { generateKeyPair, type KeyPair, keyPairFromPrivate } from './keys.ts';

/** Where the developer key lives: `$FORM_HOME/keys/developer.json` (mode 0600). */
export function developerKeyPath(home: string = formHome()): string {
  return join(home, 'keys', 'developer.json');
}

interface KeyFile {
  version: 1;
  kind: 'secp256k1';
  privateKey: string;
  publicKey: string;
  address: string;
}

/** Load a key file. Throws KEY_NOT_FOUND (with the fix) when there is none. */
export async function loadKey(path: string = developerKeyPath()): Promise<KeyPair> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FormError('KEY_NOT_FOUND', `Cannot sign: no key at ${path}`, {
        hint: 'Create your developer key with `form kit init`.',
      });
    }
    throw new FormError('KEY_INVALID', `Cannot read key ${path}: ${(err as Error).message}`);
  }
  let parsed: Partial<KeyFile>;
  try {
    parsed = JSON.parse(text) as Partial<KeyFile>;
  } catch {
    throw new FormError('KEY_INVALID', `Cannot load key ${path}: it is not valid JSON`, {
      hint: 'Restore it from a backup, or make a new one with `form kit init --force` (this replaces your identity).',
    });
  }
  if (typeof parsed.privateKey !== 'string') {
    throw new FormError('KEY_INVALID', `Cannot load key ${path}: it has no privateKey field`);
  }
  return keyPairFromPrivate(parsed.privateKey);
}

/** Write a key file atomically with mode 0600. Refuses to overwrite unless `force`. */
export async function saveKey(key: KeyPair, path: string = developerKeyPath(), force = false): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (!force) {
    try {
      await readFile(path);
      throw new FormError('KEY_EXISTS', `Cannot create key: ${path} already exists`, {
        hint: 'Keep using it, or pass --force to replace it (the old identity is lost).',
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  const body: KeyFile = {
    version: 1,
    kind: 'secp256k1',
    privateKey: bytesToHex(key.privateKey),
    publicKey: key.publicKey,
    address: key.address,
  };
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}

/** Load the key at `path`, creating one when missing (node keys). */
export async function loadOrCreateKey(path: string): Promise<KeyPair> {
  try {
    return await loadKey(path);
  } catch (err) {
    if (err instanceof FormError && err.code === 'KEY_NOT_FOUND') {
      const key = generateKeyPair();
      await saveKey(key, path);
      return key;
    }
    throw err;
  }
}
